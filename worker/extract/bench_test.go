package extract

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stevedore-dev/stevedore/worker/extract/extracttest"
)

// drain reads a document through the extractor and returns its text size.
func drain(b *testing.B, data []byte, name string, opts Options) int {
	x, err := opts.Open(bytes.NewReader(data), name, "")
	if err != nil {
		b.Fatal(err)
	}
	defer x.Close()
	n := 0
	for {
		part, err := x.Next(1 << 20)
		if errors.Is(err, io.EOF) {
			return n
		}
		if err != nil {
			b.Fatal(err)
		}
		n += len(part)
	}
}

// BenchmarkExtract reads each document fixture (small files: the per-
// document cost shows) with the basic processing type; MB/s is of the
// file's bytes.
func BenchmarkExtract(b *testing.B) {
	for _, name := range []string{"handbook.pdf", "handbook.docx", "handbook.odt", "handbook.pptx", "handbook.html", "handbook.epub", "cranes.xlsx", "suppliers-cp1252.csv"} {
		data, err := os.ReadFile(filepath.Join(fixtures, name))
		if err != nil {
			b.Fatal(err)
		}
		b.Run(name, func(b *testing.B) {
			opts := Options{PDF: testPDF(b)}
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				drain(b, data, name, opts)
			}
		})
	}
}

// BenchmarkPDFPages reads a 500-page PDF of prose (60 lines a page) and
// reports pages/s and text MB/s; "instances" runs as many documents at once
// as the pool has instances.
func BenchmarkPDFPages(b *testing.B) {
	const pages = 500
	data := extracttest.PDF(pages, func(i int) []string { return extracttest.Prose(i, 60) })
	opts := Options{PDF: testPDF(b)}
	var text int
	start := time.Now()
	for b.Loop() {
		text = drain(b, data, "big.pdf", opts)
	}
	secs := time.Since(start).Seconds()
	b.ReportMetric(float64(pages*b.N)/secs, "pages/s")
	b.ReportMetric(float64(text*b.N)/secs/1e6, "text-MB/s")
}

// BenchmarkHTMLLarge reads a 10 MB HTML page: MB/s of the page.
func BenchmarkHTMLLarge(b *testing.B) {
	var page bytes.Buffer
	page.WriteString("<html><head><style>p{}</style></head><body>")
	for i := 0; page.Len() < 10<<20; i++ {
		page.WriteString("<h2>Section</h2><p>")
		for _, l := range extracttest.Prose(i, 10) {
			page.WriteString(l + " ")
		}
		page.WriteString("</p><table><tr><td>a</td><td>b</td></tr></table>")
	}
	page.WriteString("</body></html>")
	data := page.Bytes()
	for _, structured := range []bool{false, true} {
		b.Run(map[bool]string{false: "basic", true: "advanced"}[structured], func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				drain(b, data, "big.html", Options{Structured: structured})
			}
		})
	}
}

// BenchmarkOpenSmallText opens and reads a 4 KiB plain-text object: the
// per-object cost of sniffing (type, UTF-16/32, charset) that a small object
// pays in full. 35 µs before the NUL count ahead of the UTF-16/32 scans, 26 µs
// after.
func BenchmarkOpenSmallText(b *testing.B) {
	doc := bytes.Repeat([]byte("The quick brown fox jumps over the lazy dog. "), 92)
	b.SetBytes(int64(len(doc)))
	b.ReportAllocs()
	for b.Loop() {
		drain(b, doc, "obj.txt", Options{})
	}
}
