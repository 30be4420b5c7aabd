package extract

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// The scanned fixtures (scripts/fidelity/make-scans.sh) and the text of the
// handbook's pages they were made from.
const (
	scans     = "../../scripts/testdata/corpus/scans"
	scanPages = "../../scripts/testdata/documents/scans"
)

var (
	testOCROnce sync.Once
	testOCREng  *OCR
	testOCRErr  error
)

// testOCR is OCR on this machine's Tesseract. make test requires it
// (STEVEDORE_REQUIRE_OCR=1; .ci/run installs Debian's tesseract-ocr); a
// bare go test without it skips, saying what to install.
func testOCR(t testing.TB) *OCR {
	t.Helper()
	testOCROnce.Do(func() { testOCREng, testOCRErr = NewOCR(OCRConfig{}) })
	if testOCRErr != nil {
		if os.Getenv("STEVEDORE_REQUIRE_OCR") == "1" {
			t.Fatal(testOCRErr)
		}
		t.Skip(testOCRErr)
	}
	return testOCREng
}

func pageRef(t testing.TB, pages ...string) []string {
	var ws []string
	for _, p := range pages {
		b, err := os.ReadFile(filepath.Join(scanPages, "handbook-p"+p+".txt"))
		if err != nil {
			t.Fatal(err)
		}
		ws = append(ws, words(string(b))...)
	}
	return ws
}

// TestOCRQuality: word recall of scans against the text of the pages they
// were made from — a clean 300 dpi scan in a PDF without a text layer, a
// two-page 200 dpi G4 fax, a skewed JPEG photo of a page, a page scanned
// sideways, a lossy WebP — with every page marked OCR and its confidence.
func TestOCRQuality(t *testing.T) {
	ocr := testOCR(t)
	cases := []struct {
		file, kind, version string
		pages               []string
		min                 float64
	}{
		{"scan-300dpi.pdf", "application/pdf", PDFVersion, []string{"1"}, 0.95},
		{"fax-200dpi-g4.tiff", "image/tiff", OCRVersion, []string{"1", "2"}, 0.90},
		{"photo-skewed.jpg", "image/jpeg", OCRVersion, []string{"2"}, 0.85},
		{"sideways.png", "image/png", OCRVersion, []string{"1"}, 0.90},
		{"page.webp", "image/webp", OCRVersion, []string{"1"}, 0.90},
	}
	t.Logf("%-20s %-6s %-6s %-6s %s", "file", "words", "pages", "conf", "seconds")
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			start := time.Now()
			text, secs, x := extractAll(t, filepath.Join(scans, c.file), Options{PDF: testPDF(t), OCR: ocr})
			took := time.Since(start)
			if x.Type() != c.kind || x.Version() != c.version {
				t.Errorf("type %q version %q", x.Type(), x.Version())
			}
			wr := recall(pageRef(t, c.pages...), words(text))
			if wr < c.min {
				t.Errorf("word recall %.3f, want ≥ %.2f; text:\n%s", wr, c.min, text)
			}
			pages, conf := 0, 0.0
			for _, s := range secs {
				if !s.OCR || s.Confidence <= 0.5 || s.Confidence > 1 {
					t.Errorf("section %+v: not marked OCR with a confidence", s)
				}
				pages, conf = max(pages, s.Page), conf+s.Confidence
			}
			if pages != len(c.pages) {
				t.Errorf("%d pages in the sections, want %d: %+v", pages, len(c.pages), secs)
			}
			t.Logf("%-20s %.3f  %-6d %.2f   %.1f", c.file, wr, pages, conf/float64(max(len(secs), 1)), took.Seconds())
		})
	}
}

// Without OCR, a scan is skipped no_text_layer and an image
// unsupported_type, each saying that OCR is not available and what to
// install.
func TestNoOCRSaysSo(t *testing.T) {
	for file, reason := range map[string]string{"scan-300dpi.pdf": ReasonNoTextLayer, "sideways.png": ReasonBinary} {
		err := extractErr(t, filepath.Join(scans, file), Options{PDF: testPDF(t)})
		var s *Skip
		if !errors.As(err, &s) || s.Reason != reason || !strings.Contains(s.Detail, "install tesseract-ocr") {
			t.Errorf("%s: %v", file, err)
		}
	}
}

// Hostile images: one whose header claims more pixels than the cap is
// skipped too_large without being decoded; a language that is not
// installed is named, with those that are; a page that takes too long is
// extract_timeout; a Tesseract past its memory cap is ocr_failed.
func TestOCRCaps(t *testing.T) {
	ocr := testOCR(t)
	huge := pngHeader(100_000, 100_000)
	var s *Skip
	if _, err := (Options{OCR: ocr}).Open(bytes.NewReader(huge), "huge.png", ""); !errors.As(err, &s) || s.Reason != ReasonTooLarge {
		t.Errorf("a 10-gigapixel PNG: %v", err)
	}
	err := extractErr(t, filepath.Join(scans, "sideways.png"), Options{OCR: ocr, OCRLanguages: "eng+tlh"})
	if !errors.As(err, &s) || !strings.Contains(s.Detail, `"tlh" is not installed`) || !strings.Contains(s.Detail, "eng") {
		t.Errorf("an uninstalled language: %v", err)
	}
	slow := *ocr
	slow.cfg.DocTimeout = 50 * time.Millisecond
	slow.sem = make(chan struct{}, 1)
	err = extractErr(t, filepath.Join(scans, "sideways.png"), Options{OCR: &slow})
	if !errors.As(err, &s) || s.Reason != ReasonTimeout {
		t.Errorf("past the time cap: %v", err)
	}
	small := *ocr
	small.cfg.MemoryBytes = 16 << 20
	small.sem = make(chan struct{}, 1)
	err = extractErr(t, filepath.Join(scans, "sideways.png"), Options{OCR: &small})
	if !errors.As(err, &s) || s.Reason != ReasonOCRFailed {
		t.Errorf("past the memory cap: %v", err)
	}
	if _, err := NewOCR(OCRConfig{Command: "no-such-tesseract"}); err == nil || !strings.Contains(err.Error(), "install Debian's tesseract-ocr") {
		t.Errorf("no tesseract: %v", err)
	}
}

// extractErr reads a file through the extractor and returns the error
// opening or reading it ended with.
func extractErr(t *testing.T, path string, opts Options) error {
	t.Helper()
	_, _, _, err := readAll(t, path, opts)
	return err
}

// pngHeader is the start of a PNG claiming w×h grey pixels.
func pngHeader(w, h uint32) []byte {
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr, w)
	binary.BigEndian.PutUint32(ihdr[4:], h)
	ihdr[8] = 8
	var b bytes.Buffer
	b.WriteString("\x89PNG\r\n\x1a\n")
	binary.Write(&b, binary.BigEndian, uint32(len(ihdr)))
	b.WriteString("IHDR")
	b.Write(ihdr)
	binary.Write(&b, binary.BigEndian, crc32.ChecksumIEEE(append([]byte("IHDR"), ihdr...)))
	return b.Bytes()
}
