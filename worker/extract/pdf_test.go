package extract

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stevedore-dev/stevedore/worker/extract/extracttest"
)

// makePDF is a PDF of n pages, page i showing the line text(i) (none when
// text is nil).
func makePDF(n int, text func(i int) string) []byte {
	if text == nil {
		return extracttest.PDF(n, nil)
	}
	return extracttest.PDF(n, func(i int) []string { return []string{text(i)} })
}

func openPDF(t *testing.T, p *PDF, data []byte) (string, []Section, error) {
	t.Helper()
	x, err := Options{PDF: p}.Open(bytes.NewReader(data), "doc.pdf", "")
	if err != nil {
		return "", nil, err
	}
	defer x.Close()
	var text strings.Builder
	var secs []Section
	for {
		part, err := x.Next(1 << 16)
		if errors.Is(err, io.EOF) {
			return text.String(), secs, nil
		}
		if err != nil {
			return text.String(), secs, err
		}
		text.WriteString(part)
		secs = append(secs, x.Sections()...)
	}
}

func skipReason(err error) string {
	var s *Skip
	if errors.As(err, &s) {
		return s.Reason
	}
	return fmt.Sprintf("not a skip: %v", err)
}

// TestPDFPages: every page's text, in order, each page a section.
func TestPDFPages(t *testing.T) {
	text, secs, err := openPDF(t, testPDF(t), makePDF(3, func(i int) string { return fmt.Sprintf("Page %d of 3", i+1) }))
	if err != nil {
		t.Fatal(err)
	}
	if text != "Page 1 of 3\n\nPage 2 of 3\n\nPage 3 of 3\n\n" {
		t.Fatalf("text %q", text)
	}
	if len(secs) != 3 || secs[1].Page != 2 || secs[1].Offset != int64(len("Page 1 of 3\n\n")) {
		t.Fatalf("sections %+v", secs)
	}
}

// TestPDFBadInput: each kind of bad PDF ends as a skip with its reason,
// within the time cap, and leaves the pool usable.
func TestPDFBadInput(t *testing.T) {
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	good, err := os.ReadFile(filepath.Join(fixtures, "handbook.pdf"))
	if err != nil {
		t.Fatal(err)
	}
	// A cross-reference section whose /Prev points at itself.
	cyclic := makePDF(2, func(i int) string { return "loop" })
	self := bytes.LastIndex(cyclic, []byte("xref\n0 "))
	cyclic = bytes.Replace(cyclic, []byte("/Root 1 0 R >>"), []byte(fmt.Sprintf("/Root 1 0 R /Prev %d >>", self)), 1)
	cases := []struct {
		name   string
		data   []byte
		reason string // "" : indexed or skipped, but never a crash or a hang
	}{
		{"encrypted", read("encrypted.pdf"), ReasonEncrypted},
		{"scanned (no text layer)", read("scanned.pdf"), ReasonNoTextLayer},
		{"10,000 pages", makePDF(10_000, nil), ReasonTooLarge},
		{"not a PDF after the magic", []byte("%PDF-1.7\n" + strings.Repeat("garbage ", 100)), ReasonCorrupt},
		{"truncated", good[:len(good)/2], ""},
		{"cyclic xref", cyclic, ""},
		{"empty pages", makePDF(2, nil), ReasonNoTextLayer},
	}
	p := NewPDF(PDFConfig{Instances: 1, CacheDir: testPDF(t).cfg.CacheDir, Timeout: 30 * time.Second})
	t.Cleanup(func() { p.Close() })
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := openPDF(t, p, c.data)
			if c.reason != "" && skipReason(err) != c.reason {
				t.Fatalf("got %v, want a %s skip", err, c.reason)
			}
			var s *Skip
			if err != nil && !errors.As(err, &s) {
				t.Fatalf("a plain error (would be retried): %v", err)
			}
			t.Logf("%v", err)
		})
	}
	// The one instance is free again: a good PDF still reads.
	if _, _, err := openPDF(t, p, good); err != nil {
		t.Fatal(err)
	}
}

// TestPDFTimeoutKillsTheInstance: past the time cap the instance is
// killed and the object skipped extract_timeout; the pool recovers.
func TestPDFTimeoutKillsTheInstance(t *testing.T) {
	p := NewPDF(PDFConfig{Instances: 1, CacheDir: testPDF(t).cfg.CacheDir, Timeout: time.Nanosecond})
	t.Cleanup(func() { p.Close() })
	_, _, err := openPDF(t, p, makePDF(200, func(i int) string { return "slow" }))
	if skipReason(err) != ReasonTimeout {
		t.Fatalf("got %v, want extract_timeout", err)
	}
	p.cfg.Timeout = time.Minute
	if _, _, err := openPDF(t, p, makePDF(1, func(int) string { return "after" })); err != nil {
		t.Fatal(err)
	}
}

// TestPDFMemoryCap: a page that needs more than the instance's memory
// (40,000 lines on one page, under a 32 MiB cap) is skipped too_large, and
// the next document reads; a cap below the module's own minimum (18 MiB)
// fails at Warm, not at the first PDF.
func TestPDFMemoryCap(t *testing.T) {
	p := NewPDF(PDFConfig{Instances: 1, MemoryBytes: 32 << 20, CacheDir: testPDF(t).cfg.CacheDir})
	t.Cleanup(func() { p.Close() })
	_, _, err := openPDF(t, p, extracttest.PDF(1, func(int) []string { return extracttest.Prose(0, 40_000) }))
	if skipReason(err) != ReasonTooLarge {
		t.Fatalf("got %v, want too_large", err)
	}
	if text, _, err := openPDF(t, p, makePDF(1, func(int) string { return "after" })); err != nil || text != "after\n\n" {
		t.Fatalf("after: %q %v", text, err)
	}
	small := NewPDF(PDFConfig{MemoryBytes: 16 << 20, CacheDir: testPDF(t).cfg.CacheDir})
	if err := small.Warm(); err == nil || !strings.Contains(err.Error(), "over limit") {
		t.Fatalf("Warm with 16 MiB: %v", err)
	}
}

// TestPDFCloseMidwayFreesTheInstance: a reader closed before the end (the
// task was cancelled) gives its instance back; with a pool of one, the
// next PDF would wait forever otherwise.
func TestPDFCloseMidwayFreesTheInstance(t *testing.T) {
	p := NewPDF(PDFConfig{Instances: 1, CacheDir: testPDF(t).cfg.CacheDir})
	t.Cleanup(func() { p.Close() })
	for i := 0; i < 3; i++ {
		x, err := Options{PDF: p}.Open(bytes.NewReader(makePDF(500, func(i int) string { return strings.Repeat("word ", 40) })), "big.pdf", "")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := x.Next(1024); err != nil {
			t.Fatal(err)
		}
		x.Close()
	}
	if _, _, err := openPDF(t, p, makePDF(1, func(int) string { return "free" })); err != nil {
		t.Fatal(err)
	}
}

// TestPDFWithoutExtractor: with no PDF extractor configured, PDFs are
// skipped as unsupported, by content (whatever the name says).
func TestPDFWithoutExtractor(t *testing.T) {
	_, err := OpenObject(bytes.NewReader(makePDF(1, func(int) string { return "x" })), "notes.txt", "text/plain")
	if skipReason(err) != ReasonBinary {
		t.Fatalf("got %v", err)
	}
}

// FuzzPDF: whatever the bytes, a PDF ends as text or a *Skip — never a
// panic, a plain error (which would be retried) or a hang.
func FuzzPDF(f *testing.F) {
	f.Add(makePDF(1, func(int) string { return "seed" }))
	f.Add(makePDF(3, nil))
	f.Add([]byte("%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF"))
	f.Add(extracttest.OutlineLoopPDF())
	f.Fuzz(func(t *testing.T, data []byte) {
		if !bytes.HasPrefix(data, []byte("%PDF")) {
			data = append([]byte("%PDF-1.4\n"), data...)
		}
		_, _, err := openPDF(t, testPDF(t), data)
		var s *Skip
		if err != nil && !errors.As(err, &s) {
			t.Fatalf("plain error: %v", err)
		}
		// Advanced mode walks the outline: within its caps, whatever the
		// outline claims (cycles, depth), and heading paths of at most 9.
		x, err := Options{PDF: testPDF(t), Structured: true}.Open(bytes.NewReader(data), "doc.pdf", "")
		if err != nil {
			return
		}
		defer x.Close()
		for {
			if _, err := x.Next(1 << 16); err != nil {
				return
			}
			for _, sec := range x.Sections() {
				if len(sec.Headings) > maxHeadingLevel {
					t.Fatalf("a heading path %d deep", len(sec.Headings))
				}
			}
		}
	})
}

// TestPDFOutlineCycles: an outline item that names itself as its /First
// child and its /Next sibling (go-pdfium's recursive walk overflowed the
// stack on it: a fatal error no recover catches, after ~1.4 GB) is read
// within the caps; the document is indexed with its headings.
func TestPDFOutlineCycles(t *testing.T) {
	data := extracttest.OutlineLoopPDF()
	x2, err := Options{PDF: testPDF(t), Structured: true}.Open(bytes.NewReader(data), "loop.pdf", "")
	if err != nil {
		t.Fatal(err)
	}
	defer x2.Close()
	var text strings.Builder
	deepest := 0
	for {
		part, err := x2.Next(1 << 16)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		text.WriteString(part)
		for _, s := range x2.Sections() {
			deepest = max(deepest, len(s.Headings))
		}
	}
	if !strings.Contains(text.String(), "Intro text on page 2") || !strings.Contains(text.String(), "# Intro") {
		t.Fatalf("text %q", text.String())
	}
	if deepest > maxHeadingLevel {
		t.Fatalf("heading path %d deep", deepest)
	}
	t.Logf("a self-referencing outline: %d bytes of text, heading paths at most %d deep", text.Len(), deepest)
}

// A worker whose cache directory is empty starts from the seed (the
// image's cache, compiled at build): the seed's files are copied in whole,
// and the extractor works from them.
func TestPDFCacheSeed(t *testing.T) {
	seed := testPDF(t).cfg.CacheDir
	dir := t.TempDir()
	p := NewPDF(PDFConfig{Instances: 1, CacheDir: dir, SeedDir: seed})
	defer p.Close()
	if err := p.Warm(); err != nil {
		t.Fatal(err)
	}
	files := 0
	err := filepath.WalkDir(seed, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(seed, path)
		want, _ := os.ReadFile(path)
		got, err := os.ReadFile(filepath.Join(dir, rel))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: not seeded (%v)", rel, err)
		}
		files++
		return nil
	})
	if err != nil || files == 0 {
		t.Fatalf("the seed has %d files (%v)", files, err)
	}
	leftovers, _ := filepath.Glob(filepath.Join(dir, "*", "*.seeding-*"))
	if len(leftovers) > 0 {
		t.Errorf("half-copied files left: %v", leftovers)
	}
	// Workers starting at once seed one directory together: every file
	// still arrives whole.
	shared := t.TempDir()
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() { errs <- seedCache(seed, shared) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	_ = filepath.WalkDir(seed, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(seed, path)
		want, _ := os.ReadFile(path)
		if got, err := os.ReadFile(filepath.Join(shared, rel)); err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: not whole after seeding at once (%v)", rel, err)
		}
		return nil
	})
}

// Check compiles PDFium into the cache and lets it go: the extractor holds
// no pool until the first PDF, which starts it from the cache.
func TestPDFCheckHoldsNothing(t *testing.T) {
	p := NewPDF(PDFConfig{Instances: 1, CacheDir: t.TempDir(), SeedDir: testPDF(t).cfg.CacheDir})
	defer p.Close()
	if err := p.Check(); err != nil {
		t.Fatal(err)
	}
	if p.pool != nil {
		t.Fatal("Check left a PDFium pool running")
	}
	entries, _ := os.ReadDir(p.cfg.CacheDir)
	if len(entries) == 0 {
		t.Fatal("the cache is empty after Check")
	}
	if err := p.Warm(); err != nil || p.pool == nil {
		t.Fatalf("the first use does not start the pool: %v", err)
	}
}
