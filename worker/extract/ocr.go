package extract

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"image"
	_ "image/gif" // image formats OCR reads, for their size before it does
	_ "image/jpeg"
	_ "image/png"
	"io"
	"math"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/klippa-app/go-pdfium"
	"github.com/klippa-app/go-pdfium/references"
	"github.com/klippa-app/go-pdfium/requests"
	_ "golang.org/x/image/bmp"
	_ "golang.org/x/image/tiff"
	_ "golang.org/x/image/webp"
)

// OCR reads the text of images — scanned PDF pages rendered by PDFium, and
// image files (PNG, JPEG, TIFF with all its pages, WebP, GIF, BMP) — with
// Tesseract (Debian's tesseract-ocr), run as a subprocess per image rather
// than linked through cgo: a crash or a runaway allocation in its C++ image
// code costs one recognition, not the worker. The process gets the image on
// stdin and writes TSV on stdout, with caps on its address space and CPU
// time, a minimal environment, its own process group (killed whole at its
// time cap), and one OpenMP thread. Page orientation is detected (--psm 1:
// segmentation with orientation and script detection), so scans that came
// in sideways or upside down are read.
type OCR struct {
	cfg   OCRConfig
	langs []string // installed languages
	sem   chan struct{}
}

// OCRVersion is the extractor version of image files read by OCR.
const OCRVersion = "ocr/1"

// ReasonOCRFailed is the skip reason of an image Tesseract could not read
// (it failed, or passed its memory cap); its diagnostics are in the detail.
const ReasonOCRFailed = "ocr_failed"

// OCRConfig bounds OCR. Zero fields take the defaults.
type OCRConfig struct {
	Command     string        // the tesseract binary (default: "tesseract" on PATH)
	Languages   string        // languages when a request names none, "+"-joined (default "eng")
	Processes   int           // recognitions at once in this process (default: the CPUs)
	PageTimeout time.Duration // per page (default 60 s)
	DocTimeout  time.Duration // all pages of one document (default 10 min)
	MaxPages    int           // pages recognised per document; a document that needs more is skipped too_large (default 100)
	MemoryBytes int64         // address-space cap of each process (default 1 GiB)
	DPI         int           // PDF pages are rendered at (default 300)
	MaxPixels   int64         // images (and rendered pages) with more pixels are skipped too_large (default 50 million)
}

// OCR defaults.
const (
	DefaultOCRLanguages   = "eng"
	DefaultOCRPageTimeout = time.Minute
	DefaultOCRDocTimeout  = 10 * time.Minute
	DefaultOCRMaxPages    = 100
	DefaultOCRMemoryBytes = 1 << 30
	DefaultOCRDPI         = 300
	DefaultOCRMaxPixels   = 50_000_000
)

// Caps on what one recognition writes: its TSV (a page is kilobytes) and
// its diagnostics.
const (
	maxOCROutput = 16 << 20
	maxOCRStderr = 4 << 10
)

// NewOCR finds Tesseract and its installed languages. The error says what
// to install: a worker without OCR reads everything else, and skips scans
// and images with a reason that says OCR is unavailable.
func NewOCR(cfg OCRConfig) (*OCR, error) {
	cfg.Command = cmp.Or(cfg.Command, "tesseract")
	cfg.Languages = cmp.Or(cfg.Languages, DefaultOCRLanguages)
	cfg.Processes = cmp.Or(cfg.Processes, runtime.NumCPU())
	cfg.PageTimeout = cmp.Or(cfg.PageTimeout, DefaultOCRPageTimeout)
	cfg.DocTimeout = cmp.Or(cfg.DocTimeout, DefaultOCRDocTimeout)
	cfg.MaxPages = cmp.Or(cfg.MaxPages, DefaultOCRMaxPages)
	cfg.MemoryBytes = cmp.Or(cfg.MemoryBytes, DefaultOCRMemoryBytes)
	cfg.DPI = cmp.Or(cfg.DPI, DefaultOCRDPI)
	cfg.MaxPixels = cmp.Or(cfg.MaxPixels, DefaultOCRMaxPixels)
	bin, err := exec.LookPath(cfg.Command)
	if err != nil {
		return nil, fmt.Errorf("ocr: %s not found (install Debian's tesseract-ocr and the language packages, e.g. tesseract-ocr-eng tesseract-ocr-deu): %w", cfg.Command, err)
	}
	cfg.Command = bin
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "--list-langs").Output()
	if err != nil {
		return nil, fmt.Errorf("ocr: %s --list-langs: %w", bin, err)
	}
	o := &OCR{cfg: cfg, sem: make(chan struct{}, cfg.Processes)}
	for _, line := range strings.Split(string(out), "\n")[1:] {
		if l := strings.TrimSpace(line); l != "" && l != "osd" {
			o.langs = append(o.langs, l)
		}
	}
	if _, err := o.Check(cfg.Languages); err != nil {
		return nil, err
	}
	return o, nil
}

// Processes is how many recognitions run at once; DocTimeout the OCR
// time cap of one document.
func (o *OCR) Processes() int            { return o.cfg.Processes }
func (o *OCR) DocTimeout() time.Duration { return o.cfg.DocTimeout }

// Languages are the installed languages.
func (o *OCR) Languages() []string { return o.langs }

// Check returns the languages to read with for a request's ocr_languages
// ("" is the configured default), or an error naming what is installed.
func (o *OCR) Check(langs string) (string, error) {
	if langs == "" {
		return o.cfg.Languages, nil
	}
	for _, l := range strings.Split(langs, "+") {
		if !slices.Contains(o.langs, l) {
			return "", fmt.Errorf("ocr: language %q is not installed (installed: %s)", l, strings.Join(o.langs, ", "))
		}
	}
	return langs, nil
}

// ocrPage is the text Tesseract read on one page, and its mean word
// confidence (0–1).
type ocrPage struct {
	text string
	conf float64
}

// recognize reads the pages of one image (PNM, PNG, JPEG, TIFF …) within
// timeout, which starts once a process slot is free; dpi, when not 0, is
// its resolution (a rendered page's). ran is set to how long it ran.
func (o *OCR) recognize(ctx context.Context, img []byte, langs string, dpi int, timeout time.Duration, ran *time.Duration) ([]ocrPage, error) {
	select {
	case o.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-o.sem }()
	start := time.Now()
	defer func() { *ran = time.Since(start) }()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// The shell sets the limits and execs Tesseract: no argument is
	// interpreted by it (they are positional parameters).
	const script = `ulimit -v "$1" && ulimit -t "$2" && shift 2 && exec "$@"`
	args := []string{"-c", script, "ocr", strconv.FormatInt(o.cfg.MemoryBytes>>10, 10), strconv.Itoa(int(timeout.Seconds()) + 1),
		o.cfg.Command, "stdin", "stdout", "--psm", "1", "-l", langs}
	if dpi > 0 {
		args = append(args, "--dpi", strconv.Itoa(dpi))
	}
	cmd := exec.CommandContext(ctx, "/bin/sh", append(args, "tsv")...)
	cmd.Env = []string{"PATH=/usr/bin:/bin", "OMP_THREAD_LIMIT=1"}
	if p := os.Getenv("TESSDATA_PREFIX"); p != "" {
		cmd.Env = append(cmd.Env, "TESSDATA_PREFIX="+p)
	}
	cmd.Dir = os.TempDir()
	cmd.Stdin = bytes.NewReader(img)
	stdout, stderr := &ocrOutput{max: maxOCROutput}, &ocrOutput{max: maxOCRStderr}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	switch {
	case ctx.Err() != nil && errors.Is(ctx.Err(), context.DeadlineExceeded):
		return nil, &Skip{ReasonTimeout, fmt.Sprintf("OCR of a page took over %s", timeout)}
	case ctx.Err() != nil:
		return nil, ctx.Err()
	case stdout.over:
		return nil, &Skip{ReasonTextTooLarge, "OCR output over its cap"}
	case err != nil:
		return nil, &Skip{ReasonOCRFailed, fmt.Sprintf("%v: %s", err, strings.TrimSpace(stderr.String()))}
	}
	return parseTSV(stdout.String()), nil
}

// ocrOutput is a buffer that keeps at most max bytes and says when more came.
type ocrOutput struct {
	bytes.Buffer
	max  int
	over bool
}

func (c *ocrOutput) Write(p []byte) (int, error) {
	if room := c.max - c.Len(); len(p) > room {
		c.over = true
		c.Buffer.Write(p[:max(room, 0)])
		return len(p), nil
	}
	return c.Buffer.Write(p)
}

// parseTSV turns Tesseract's TSV (a row per page, block, paragraph, line
// and word) into each page's text — words joined by spaces, lines by
// newlines, paragraphs and blocks by blank lines — and its mean word
// confidence.
func parseTSV(tsv string) []ocrPage {
	var pages []ocrPage
	var b strings.Builder
	var sum float64
	words := 0
	lastPage, lastPar, lastLine := "", "", ""
	flush := func() {
		if lastPage == "" {
			return
		}
		p := ocrPage{text: strings.TrimSpace(b.String()) + "\n\n"}
		if words > 0 {
			p.conf = sum / float64(words) / 100
		}
		pages = append(pages, p)
		b.Reset()
		sum, words = 0, 0
	}
	for _, row := range strings.Split(tsv, "\n") {
		f := strings.Split(row, "\t")
		if len(f) < 12 || f[0] != "5" || strings.TrimSpace(f[11]) == "" {
			continue
		}
		page, par, line := f[1], f[2]+"."+f[3], f[2]+"."+f[3]+"."+f[4]
		switch {
		case page != lastPage:
			flush()
		case par != lastPar:
			b.WriteString("\n\n")
		case line != lastLine:
			b.WriteByte('\n')
		default:
			b.WriteByte(' ')
		}
		lastPage, lastPar, lastLine = page, par, line
		b.WriteString(strings.TrimSpace(f[11]))
		if c, err := strconv.ParseFloat(f[10], 64); err == nil && c >= 0 {
			sum += c
			words++
		}
	}
	flush()
	return pages
}

// Which PDF pages OCR reads: in basic processing those without a usable
// text layer (fewer than minLayerChars characters: a scan, perhaps with a
// page number stamped on it); in advanced processing also those with
// little text (fewer than thinLayerChars: a scan with a typed caption, a
// page that is mostly a picture of text). The OCR text replaces the layer's
// when it has more words.
const (
	minLayerChars  = 16
	thinLayerChars = 200
)

// ocrJob is what OCR may do for one document: its languages, and how many
// pages and how much time it has used of its caps.
type ocrJob struct {
	ocr   *OCR
	langs string
	pages int
	spent time.Duration
	// pause stops the PDFium time cap while a page is recognised; the
	// function it returns starts it again.
	pause func() func()
}

// newJob is the OCR of one document with a request's languages (""
// for the default); nil when there is no OCR.
func (o *OCR) newJob(langs string) (*ocrJob, error) {
	if o == nil {
		return nil, nil
	}
	l, err := o.Check(langs)
	if err != nil {
		return nil, &Skip{ReasonBinary, err.Error()}
	}
	return &ocrJob{ocr: o, langs: l}, nil
}

// wants reports whether a page whose text layer has chars characters is
// read by OCR.
func (j *ocrJob) wants(chars int, structured bool) bool {
	return j != nil && (chars < minLayerChars || structured && chars < thinLayerChars)
}

// page renders page i in grey at the configured resolution (less for a
// page so large it would pass the pixel cap) and recognises it.
func (j *ocrJob) page(ctx context.Context, inst pdfium.Pdfium, doc references.FPDF_DOCUMENT, i int) (string, float64, error) {
	cfg := j.ocr.cfg
	if j.pages++; j.pages > cfg.MaxPages {
		return "", 0, &Skip{ReasonTooLarge, fmt.Sprintf("more than %d pages need OCR (the per-document cap)", cfg.MaxPages)}
	}
	timeout := min(cfg.PageTimeout, cfg.DocTimeout-j.spent)
	if timeout <= 0 {
		return "", 0, &Skip{ReasonTimeout, fmt.Sprintf("OCR of the document took over %s", cfg.DocTimeout)}
	}
	img, dpi, err := renderGray(inst, doc, i, cfg.DPI, cfg.MaxPixels)
	if err != nil {
		return "", 0, err
	}
	resume := func() {}
	if j.pause != nil {
		resume = j.pause()
	}
	var ran time.Duration
	pages, err := j.ocr.recognize(ctx, img, j.langs, dpi, timeout, &ran)
	j.spent += ran
	resume()
	if err != nil || len(pages) == 0 {
		return "", 0, err
	}
	return pages[0].text, pages[0].conf, nil
}

// renderGray renders page i as a binary PGM image at dpi, or at the
// resolution that keeps it within maxPixels.
func renderGray(inst pdfium.Pdfium, doc references.FPDF_DOCUMENT, i, dpi int, maxPixels int64) ([]byte, int, error) {
	page := requests.Page{ByIndex: &requests.PageByIndex{Document: doc, Index: i}}
	w, err := inst.FPDF_GetPageWidthF(&requests.FPDF_GetPageWidthF{Page: page})
	if err != nil {
		return nil, 0, &Skip{ReasonCorrupt, fmt.Sprintf("PDF page %d: %v", i+1, err)}
	}
	h, err := inst.FPDF_GetPageHeightF(&requests.FPDF_GetPageHeightF{Page: page})
	if err != nil {
		return nil, 0, &Skip{ReasonCorrupt, fmt.Sprintf("PDF page %d: %v", i+1, err)}
	}
	// Pixels at dpi: (w/72·dpi)·(h/72·dpi); scale dpi down to fit the cap.
	if px := float64(w.PageWidth) * float64(h.PageHeight) / (72 * 72) * float64(dpi*dpi); px > float64(maxPixels) {
		dpi = int(float64(dpi) * math.Sqrt(float64(maxPixels)/px))
	}
	if dpi < 50 {
		return nil, 0, &Skip{ReasonTooLarge, fmt.Sprintf("PDF page %d is too large to render for OCR", i+1)}
	}
	r, err := inst.RenderPageInDPI(&requests.RenderPageInDPI{Page: page, DPI: dpi, ImageFormat: requests.RenderImageFormatGrayscale})
	if err != nil {
		return nil, 0, &Skip{ReasonCorrupt, fmt.Sprintf("PDF page %d could not be rendered for OCR: %v", i+1, err)}
	}
	defer r.Cleanup()
	g, ok := r.Result.RenderedImage.(*image.Gray)
	if !ok {
		return nil, 0, &Skip{ReasonCorrupt, fmt.Sprintf("PDF page %d rendered as %T", i+1, r.Result.RenderedImage)}
	}
	return pgm(deskew(g)), dpi, nil
}

// pgm encodes a grey image as binary PGM (P5), which Tesseract reads
// without decompressing anything.
func pgm(g *image.Gray) []byte {
	b := g.Bounds()
	var out bytes.Buffer
	fmt.Fprintf(&out, "P5\n%d %d\n255\n", b.Dx(), b.Dy())
	out.Grow(b.Dx() * b.Dy())
	for y := b.Min.Y; y < b.Max.Y; y++ {
		off := (y - b.Min.Y) * g.Stride
		out.Write(g.Pix[off : off+b.Dx()])
	}
	return out.Bytes()
}

// maxImageBytes caps an image file read for OCR (it is held in memory and
// handed to Tesseract whole).
const maxImageBytes = 64 << 20

// imageTypes are the image formats OCR reads, as content sniffing names them.
var imageTypes = []string{"image/png", "image/jpeg", "image/tiff", "image/webp", "image/gif", "image/bmp"}

// openImage reads an image file by OCR: its pages (a TIFF's every page)
// each begin a section marked OCR. The image's size is checked first: one
// whose pixels are over the cap is skipped too_large, not decoded.
func (o *OCR) openImage(br io.Reader, kind, langs string, log *sectionLog) (io.Reader, io.Closer, error) {
	job, err := o.newJob(langs)
	if err != nil {
		return nil, nil, err
	}
	img, err := io.ReadAll(io.LimitReader(br, maxImageBytes+1))
	if err != nil {
		return nil, nil, asSkip(err)
	}
	if len(img) > maxImageBytes {
		return nil, nil, &Skip{ReasonTooLarge, fmt.Sprintf("an image over %d MiB", maxImageBytes>>20)}
	}
	cfg, _, err := image.DecodeConfig(bytes.NewReader(img))
	if err != nil {
		return nil, nil, &Skip{ReasonCorrupt, fmt.Sprintf("%s that cannot be decoded: %v", kind, err)}
	}
	if px := int64(cfg.Width) * int64(cfg.Height); px > o.cfg.MaxPixels {
		return nil, nil, &Skip{ReasonTooLarge, fmt.Sprintf("an image of %d×%d pixels, over the %d-pixel cap", cfg.Width, cfg.Height, o.cfg.MaxPixels)}
	}
	if kind != "image/tiff" {
		// Straightened first (deskew.go); a TIFF, which may hold many
		// pages, goes to Tesseract as it is.
		src, _, err := image.Decode(bytes.NewReader(img))
		if err != nil {
			return nil, nil, &Skip{ReasonCorrupt, fmt.Sprintf("%s that cannot be decoded: %v", kind, err)}
		}
		img = pgm(deskew(toGray(src)))
	}
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	go func() {
		pw.CloseWithError(job.image(ctx, img, newDocWriter(pw, log)))
	}()
	return pr, closerFunc(func() error { cancel(); return pr.Close() }), nil
}

// image recognises an image file's pages and writes their text.
func (j *ocrJob) image(ctx context.Context, img []byte, w *docWriter) error {
	var ran time.Duration
	pages, err := j.ocr.recognize(ctx, img, j.langs, 0, j.ocr.cfg.DocTimeout, &ran)
	if err != nil {
		return err
	}
	if len(pages) > j.ocr.cfg.MaxPages {
		return &Skip{ReasonTooLarge, fmt.Sprintf("an image of %d pages, over the %d-page OCR cap", len(pages), j.ocr.cfg.MaxPages)}
	}
	chars := 0
	for i, p := range pages {
		w.log.atOCRPage(w.offset(), i+1, p.conf)
		chars += len(strings.TrimSpace(p.text))
		if _, err := w.WriteString(p.text); err != nil {
			return err
		}
	}
	if chars == 0 {
		return &Skip{ReasonNoTextLayer, "an image in which OCR found no text"}
	}
	return w.Flush()
}
