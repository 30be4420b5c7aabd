package index

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/worker/extract"
)

// A scanned PDF (no text layer) is indexed through OCR: its chunks are
// marked ocr with the page's confidence and carry its page; the page is
// counted in stevedore_ocr_pages_total; ocr_languages reaches Tesseract (a
// language not installed skips the scan, saying so).
func TestScanIndexedByOCR(t *testing.T) {
	ocr, err := extract.NewOCR(extract.OCRConfig{})
	if err != nil {
		if os.Getenv("STEVEDORE_REQUIRE_OCR") == "1" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	dir, _ := os.UserCacheDir()
	pdf := extract.NewPDF(extract.PDFConfig{Instances: 1, CacheDir: filepath.Join(dir, "stevedore", "wazero")})
	t.Cleanup(func() { pdf.Close() })
	x := newIndexer(t)
	x.h.cfg.PDF, x.h.cfg.OCR = pdf, ocr
	scan, err := os.ReadFile("../../scripts/testdata/corpus/scans/scan-300dpi.pdf")
	if err != nil {
		t.Fatal(err)
	}
	x.s3.Put(bucket, "scan.pdf", string(scan))
	chunks, _, _, ev := x.handle(t, "scan.pdf")
	if ev.Outcome != schema.OutcomeIndexed || len(chunks) < 2 {
		t.Fatalf("%+v, %d chunks", ev, len(chunks))
	}
	for _, c := range chunks {
		if !c.OCR || c.OCRConfidence < 0.8 || c.OCRConfidence > 1 || c.PageStart != 1 {
			t.Fatalf("chunk %d: ocr %v confidence %.2f page %d", c.Index, c.OCR, c.OCRConfidence, c.PageStart)
		}
	}
	if n := testutil.ToFloat64(x.h.m.OCRPages); n != 1 {
		t.Fatalf("%v OCR pages counted", n)
	}
	x.task.JobID, x.task.OCRLanguages = "job_j", "tlh"
	x.task.SkipExisting = false
	_, _, _, ev = x.handle(t, "scan.pdf")
	if ev.Outcome != schema.OutcomeSkipped || !strings.Contains(ev.Reason, `"tlh" is not installed`) {
		t.Fatalf("%+v", ev)
	}
}
