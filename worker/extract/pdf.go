package extract

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klippa-app/go-pdfium"
	pdferrors "github.com/klippa-app/go-pdfium/errors"
	"github.com/klippa-app/go-pdfium/references"
	"github.com/klippa-app/go-pdfium/requests"
	"github.com/klippa-app/go-pdfium/webassembly"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
)

// PDFs are read through PDFium compiled to WebAssembly and run by wazero:
// pure Go, no cgo, and sandboxed — an instance sees no file system (the
// document reaches it through read callbacks), has a memory cap, and is
// killed when its time is up.
const (
	PDFVersion = "pdf/1" // the text layer of a PDF, page by page

	ReasonNoTextLayer = "no_text_layer" // a scanned PDF: pages without text, and no OCR found any
	ReasonTimeout     = "extract_timeout"
)

// PDFConfig bounds the PDF extractor. Zero fields take the defaults.
type PDFConfig struct {
	Instances   int           // PDFium instances working at once (default 2); more PDFs wait for one
	MaxPages    int           // documents with more pages are skipped too_large (default 5,000)
	Timeout     time.Duration // per document; past it the instance is killed and the object skipped (default 2 min)
	MemoryBytes int64         // WebAssembly memory per instance (default 256 MiB)
	CacheDir    string        // wazero's compilation cache ("" = compile in memory at every start)
	// SeedDir is a read-only compilation cache made ahead (the container
	// image's, compiled at build), copied into CacheDir where CacheDir
	// lacks its files. wazero keys a compiled module by the CPU's features:
	// on a machine like the builder's the seed is used as it is; on
	// another, the module is compiled once and cached in CacheDir beside it.
	SeedDir string
}

// PDF defaults.
const (
	DefaultPDFInstances   = 2
	DefaultPDFMaxPages    = 5000
	DefaultPDFTimeout     = 2 * time.Minute
	DefaultPDFMemoryBytes = 256 << 20
)

// PDF is a bounded pool of PDFium instances, started on first use (compiling
// the 5.8 MB module takes seconds; with CacheDir set, only the first process
// on a machine pays it). Safe for concurrent use.
type PDF struct {
	cfg  PDFConfig
	once sync.Once
	pool pdfium.Pool
	err  error
	sem  chan struct{}
}

// NewPDF returns a PDF extractor with cfg's bounds.
func NewPDF(cfg PDFConfig) *PDF {
	if cfg.Instances <= 0 {
		cfg.Instances = DefaultPDFInstances
	}
	if cfg.MaxPages <= 0 {
		cfg.MaxPages = DefaultPDFMaxPages
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultPDFTimeout
	}
	if cfg.MemoryBytes <= 0 {
		cfg.MemoryBytes = DefaultPDFMemoryBytes
	}
	return &PDF{cfg: cfg, sem: make(chan struct{}, cfg.Instances)}
}

func (p *PDF) start() error {
	p.once.Do(func() {
		rc := wazero.NewRuntimeConfig().
			WithCoreFeatures(api.CoreFeaturesV2 | experimental.CoreFeaturesExceptionHandling).
			WithMemoryLimitPages(uint32(p.cfg.MemoryBytes >> 16)).
			WithCloseOnContextDone(true)
		if p.cfg.CacheDir != "" {
			if p.cfg.SeedDir != "" {
				if err := seedCache(p.cfg.SeedDir, p.cfg.CacheDir); err != nil {
					p.err = fmt.Errorf("pdf: seed the compilation cache from %s: %w", p.cfg.SeedDir, err)
					return
				}
			}
			cache, err := wazero.NewCompilationCacheWithDir(p.cfg.CacheDir)
			if err != nil {
				p.err = fmt.Errorf("pdf: compilation cache %s: %w", p.cfg.CacheDir, err)
				return
			}
			rc = rc.WithCompilationCache(cache)
		}
		p.pool, p.err = webassembly.Init(webassembly.Config{
			Context: experimental.WithMemoryAllocator(context.Background(), wasmMemory()),
			MinIdle: 0, MaxIdle: p.cfg.Instances, MaxTotal: p.cfg.Instances,
			RuntimeConfig: rc,
			FSConfig:      wazero.NewFSConfig(), // no file system inside the sandbox
			Stdout:        io.Discard, Stderr: io.Discard,
		})
		if p.err != nil {
			p.err = fmt.Errorf("pdf: start PDFium: %w", p.err)
		}
		// Compiling the module (no cache, or an empty one) leaves ≈ 300 MB of
		// garbage, and the heap is far below the collector's next goal then:
		// the process would keep that memory for minutes. Collect it and hand
		// it back now (one collection at start when nothing was compiled).
		debug.FreeOSMemory()
	})
	return p.err
}

// Warm starts the pool now (compiling the module, or loading it from the
// cache) and starts one instance, instead of at the first PDF: a process
// whose cache directory or memory cap cannot work says so at start.
func (p *PDF) Warm() error {
	if err := p.start(); err != nil {
		return err
	}
	inst, err := p.pool.GetInstance(time.Minute)
	if err != nil {
		return fmt.Errorf("pdf: start an instance (memory cap %d MiB): %w", p.cfg.MemoryBytes>>20, err)
	}
	return inst.Close()
}

// Check proves PDFium compiles and starts under the memory cap, filling
// CacheDir, and then lets it go: the pool itself starts on the first PDF,
// from the cache in half a second. A worker that reads only text never
// holds PDFium (its decoded module and compiled code, ≈ 25 MiB). Without a
// CacheDir it is Warm (checking would compile twice).
func (p *PDF) Check() error {
	if p.cfg.CacheDir == "" {
		return p.Warm()
	}
	probe := NewPDF(PDFConfig{Instances: 1, MemoryBytes: p.cfg.MemoryBytes, CacheDir: p.cfg.CacheDir, SeedDir: p.cfg.SeedDir})
	err := probe.Warm()
	if cerr := probe.Close(); err == nil {
		err = cerr
	}
	return err
}

// Close stops the pool.
func (p *PDF) Close() error {
	if p == nil || p.pool == nil {
		return nil
	}
	return closingUnderCalls(p.pool.Close)
}

// openPDF spools a PDF and returns a reader of its text, written page by
// page by a goroutine holding one PDFium instance.
func (p *PDF) open(br io.Reader, structured bool, log *sectionLog, ocr *ocrJob) (io.Reader, io.Closer, error) {
	f, n, err := spoolFile(br, "PDF")
	if err != nil {
		return nil, nil, err
	}
	if err := p.start(); err != nil {
		f.Close()
		return nil, nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	go func() {
		defer f.Close()
		job := &pdfJob{w: newDocWriter(pw, log), structured: structured, ocr: ocr}
		pw.CloseWithError(p.extract(ctx, f, n, job))
	}()
	return pr, closerFunc(func() error { cancel(); return pr.Close() }), nil
}

type closerFunc func() error

func (c closerFunc) Close() error { return c() }

// pdfJob is one document's extraction: where its text goes, how it is read,
// what of its outline is still to place.
type pdfJob struct {
	w          *docWriter
	structured bool
	outline    []bookmark
	ocr        *ocrJob // nil: this worker has no OCR
}

// extract writes the text of every page, each page beginning a section.
// The time cap is PDFium's: it stands still while a page is recognised by
// OCR, which has its own caps.
func (p *PDF) extract(ctx context.Context, f io.ReadSeeker, size int64, job *pdfJob) (err error) {
	select {
	case p.sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-p.sem }()
	inst, err := p.pool.GetInstanceWithContext(ctx)
	if err != nil {
		return fmt.Errorf("pdf: get an instance: %w", err)
	}
	// The time cap and the reader going away both kill the instance, which
	// ends any call in flight.
	var killed sync.Once
	var timedOut atomic.Bool
	kill := func() { killed.Do(func() { _ = closingUnderCalls(inst.Kill) }) }
	timer := time.AfterFunc(p.cfg.Timeout, func() { timedOut.Store(true); kill() })
	deadline := time.Now().Add(p.cfg.Timeout)
	if job.ocr != nil {
		job.ocr.pause = func() func() {
			if !timer.Stop() {
				return func() {} // fired: the instance is being killed
			}
			left := time.Until(deadline)
			return func() { deadline = time.Now().Add(left); timer.Reset(left) }
		}
	}
	stop := context.AfterFunc(ctx, kill)
	defer func() {
		timer.Stop()
		stop()
		killed.Do(func() { _ = inst.Close() })
		if timedOut.Load() {
			err = &Skip{ReasonTimeout, fmt.Sprintf("PDF text not extracted within %s", p.cfg.Timeout)}
		}
		if r := recover(); r != nil {
			err = &Skip{ReasonCorrupt, fmt.Sprintf("PDFium failed: %v", r)}
		}
	}()
	return p.read(ctx, inst, f, size, job)
}

// read opens the document on inst and writes its pages' text to w.
func (p *PDF) read(ctx context.Context, inst pdfium.Pdfium, f io.ReadSeeker, size int64, job *pdfJob) error {
	doc, err := inst.OpenDocument(&requests.OpenDocument{FileReader: f, FileReaderSize: size})
	switch {
	case errors.Is(err, pdferrors.ErrPassword):
		return &Skip{ReasonEncrypted, "a password-protected PDF"}
	case errors.Is(err, pdferrors.ErrSecurity):
		return &Skip{ReasonEncrypted, "a PDF with an unsupported security handler"}
	case err != nil:
		return &Skip{ReasonCorrupt, "not a readable PDF: " + err.Error()}
	}
	defer inst.FPDF_CloseDocument(&requests.FPDF_CloseDocument{Document: doc.Document})
	count, err := inst.FPDF_GetPageCount(&requests.FPDF_GetPageCount{Document: doc.Document})
	if err != nil {
		return &Skip{ReasonCorrupt, "PDF page count: " + err.Error()}
	}
	if count.PageCount > p.cfg.MaxPages {
		return &Skip{ReasonTooLarge, fmt.Sprintf("a PDF of %d pages, over the %d-page cap", count.PageCount, p.cfg.MaxPages)}
	}
	if job.structured {
		job.outline = readOutline(inst, doc.Document)
	}
	chars := 0
	for i := 0; i < count.PageCount; i++ {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		n, err := p.page(ctx, inst, doc.Document, i, job)
		if err != nil {
			return err
		}
		chars += n
	}
	if chars == 0 && count.PageCount > 0 {
		why := "OCR is not available on this worker: install tesseract-ocr"
		if job.ocr != nil {
			why = "OCR found no text on them either"
		}
		return &Skip{ReasonNoTextLayer, fmt.Sprintf("%d pages without a text layer (%s)", count.PageCount, why)}
	}
	return job.w.Flush()
}

// page writes page i's text with the outline's entries that start on
// it (taken off the job's outline), and returns how many characters it
// has. A page with no usable text layer is read by OCR (ocr.go).
func (p *PDF) page(ctx context.Context, inst pdfium.Pdfium, doc references.FPDF_DOCUMENT, i int, job *pdfJob) (int, error) {
	text, err := pageText(inst, doc, i)
	if err != nil && strings.Contains(err.Error(), "wasm error") {
		// PDFium aborts (a trap) when an allocation fails: almost always
		// a page that needs more than the instance's memory cap.
		return 0, &Skip{ReasonTooLarge, fmt.Sprintf("PDFium stopped on page %d (%v): the page most likely needs more than the %d MiB memory cap",
			i+1, err, p.cfg.MemoryBytes>>20)}
	}
	if err != nil {
		return 0, &Skip{ReasonCorrupt, fmt.Sprintf("PDF page %d: %v", i+1, err)}
	}
	w := job.w
	n, conf := len(strings.TrimSpace(text)), -1.0 // -1: not read by OCR
	if job.ocr.wants(n, job.structured) {
		read, c, err := job.ocr.page(ctx, inst, doc, i)
		if err != nil {
			return 0, err
		}
		if len(strings.Fields(read)) > len(strings.Fields(text)) {
			text, n, conf = read, len(strings.TrimSpace(read)), c
		}
	}
	w.log.atOCRPage(w.offset(), i+1, conf)
	var here []bookmark
	for len(job.outline) > 0 && job.outline[0].page <= i {
		here, job.outline = append(here, job.outline[0]), job.outline[1:]
	}
	return n, writePage(w, text, here, job.structured)
}

// pageText is the text of page i: lines end in "\n" (PDFium says "\r\n"),
// and the page ends in a blank line.
func pageText(inst pdfium.Pdfium, doc references.FPDF_DOCUMENT, i int) (string, error) {
	page, err := inst.FPDF_LoadPage(&requests.FPDF_LoadPage{Document: doc, Index: i})
	if err != nil {
		return "", err
	}
	defer inst.FPDF_ClosePage(&requests.FPDF_ClosePage{Page: page.Page})
	tp, err := inst.FPDFText_LoadPage(&requests.FPDFText_LoadPage{Page: requests.Page{ByReference: &page.Page}})
	if err != nil {
		return "", err
	}
	defer inst.FPDFText_ClosePage(&requests.FPDFText_ClosePage{TextPage: tp.TextPage})
	n, err := inst.FPDFText_CountChars(&requests.FPDFText_CountChars{TextPage: tp.TextPage})
	if err != nil {
		return "", err
	}
	if n.Count <= 0 {
		return "", nil
	}
	t, err := inst.FPDFText_GetText(&requests.FPDFText_GetText{TextPage: tp.TextPage, StartIndex: 0, Count: n.Count})
	if err != nil {
		return "", err
	}
	text := strings.ReplaceAll(t.Text, "\r\n", "\n")
	text = strings.ReplaceAll(text, "\r", "\n")
	text = strings.ReplaceAll(text, "\x00", "")
	text = strings.TrimRight(text, " \n") + "\n\n"
	return text, nil
}

// writePage writes a page's text; each outline entry pointing at the page
// begins a section where its title is found on the page (at the page's
// start when it is not), and is marked as a Markdown heading when
// structured.
func writePage(w *docWriter, text string, marks []bookmark, structured bool) error {
	from := 0
	for _, b := range marks {
		at := -1
		if b.title != "" {
			if j := strings.Index(text[from:], b.title); j >= 0 {
				at = from + j
			}
		}
		if at < 0 {
			w.log.atHeading(w.offset(), b.level, b.title)
			continue
		}
		w.WriteString(text[from:at])
		w.log.atHeading(w.offset(), b.level, b.title)
		if structured {
			if at > 0 && text[at-1] != '\n' {
				w.WriteByte('\n')
			}
			w.WriteString(strings.Repeat("#", min(b.level, 6)) + " ")
		}
		from = at
	}
	_, err := w.WriteString(text[from:])
	return err
}

// bookmark is one outline entry with the page it points at.
type bookmark struct {
	level int
	title string
	page  int // 0-based
}

// Caps on the outline walk: a tenant's PDF may make an outline item its own
// child or sibling (go-pdfium's recursive GetBookmarks then overflows the
// stack, which no recover catches), or list millions of items. Entries past
// the caps are not read; the document's text is unaffected.
const (
	maxOutlineItems = 4096 // entries read in all
	maxOutlineDepth = 16   // nesting walked; levels past 9 count as 9
	maxHeadingLevel = 9
)

// readOutline lists the outline in document order (depth first), keeping
// the entries that point at a page, sorted by page (stable: the outline's
// own order among entries of one page). It walks the tree itself, without
// recursion and within the caps above: PDFium hands out a new reference
// for each visit, so a cycle is recognised by its depth and length.
func readOutline(inst pdfium.Pdfium, doc references.FPDF_DOCUMENT) []bookmark {
	type frame struct {
		item  *references.FPDF_BOOKMARK
		level int
	}
	first, err := inst.FPDFBookmark_GetFirstChild(&requests.FPDFBookmark_GetFirstChild{Document: doc})
	if err != nil || first.Bookmark == nil {
		return nil
	}
	var out []bookmark
	stack := []frame{{first.Bookmark, 1}}
	for seen := 0; len(stack) > 0 && seen < maxOutlineItems; seen++ {
		f := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if page := outlinePage(inst, doc, *f.item); page >= 0 {
			title, _ := inst.FPDFBookmark_GetTitle(&requests.FPDFBookmark_GetTitle{Bookmark: *f.item})
			t := ""
			if title != nil {
				t = strings.TrimSpace(title.Title)
			}
			out = append(out, bookmark{level: min(f.level, maxHeadingLevel), title: t, page: page})
		}
		// The sibling goes below the child, so the child's subtree is read first.
		if next, err := inst.FPDFBookmark_GetNextSibling(&requests.FPDFBookmark_GetNextSibling{Document: doc, Bookmark: *f.item}); err == nil && next.Bookmark != nil {
			stack = append(stack, frame{next.Bookmark, f.level})
		}
		if f.level < maxOutlineDepth {
			if child, err := inst.FPDFBookmark_GetFirstChild(&requests.FPDFBookmark_GetFirstChild{Document: doc, Bookmark: f.item}); err == nil && child.Bookmark != nil {
				stack = append(stack, frame{child.Bookmark, f.level + 1})
			}
		}
	}
	slices.SortStableFunc(out, func(a, b bookmark) int { return a.page - b.page })
	return out
}

// outlinePage is the 0-based page an outline entry points at (through its
// destination or its GoTo action), -1 when none.
func outlinePage(inst pdfium.Pdfium, doc references.FPDF_DOCUMENT, item references.FPDF_BOOKMARK) int {
	var dest *references.FPDF_DEST
	if d, err := inst.FPDFBookmark_GetDest(&requests.FPDFBookmark_GetDest{Document: doc, Bookmark: item}); err == nil && d.Dest != nil {
		dest = d.Dest
	} else if a, err := inst.FPDFBookmark_GetAction(&requests.FPDFBookmark_GetAction{Bookmark: item}); err == nil && a.Action != nil {
		if d, err := inst.FPDFAction_GetDest(&requests.FPDFAction_GetDest{Document: doc, Action: *a.Action}); err == nil && d.Dest != nil {
			dest = d.Dest
		}
	}
	if dest == nil {
		return -1
	}
	idx, err := inst.FPDFDest_GetDestPageIndex(&requests.FPDFDest_GetDestPageIndex{Document: doc, Dest: *dest})
	if err != nil {
		return -1
	}
	return idx.Index
}

// seedCache copies the files of seed that dir lacks into dir (wazero's
// cache is a tree of files named by their content's key).
func seedCache(seed, dir string) error {
	return filepath.WalkDir(seed, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(seed, path)
		if err != nil {
			return err
		}
		to := filepath.Join(dir, rel)
		if d.IsDir() {
			return os.MkdirAll(to, 0o755)
		}
		if _, err := os.Stat(to); err == nil {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		// Whole or not at all, under a name of its own: another process may
		// be seeding the same directory at once.
		tmp, err := os.CreateTemp(filepath.Dir(to), filepath.Base(to)+".seeding-*")
		if err != nil {
			return err
		}
		_, err = tmp.Write(data)
		if cerr := tmp.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Rename(tmp.Name(), to)
		}
		if err != nil {
			_ = os.Remove(tmp.Name())
		}
		return err
	})
}
