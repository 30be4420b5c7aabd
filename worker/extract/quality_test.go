package extract

import (
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
)

// The document fixtures (scripts/make-documents.sh) and the text they were
// made from.
const (
	fixtures = "../../scripts/testdata/corpus/documents"
	sources  = "../../scripts/testdata/documents"
)

var (
	testPDFOnce sync.Once
	testPDFEng  *PDF
)

// testPDF is one PDF extractor for the package's tests, with its
// compilation cache where the CI keeps its caches.
func testPDF(t testing.TB) *PDF {
	testPDFOnce.Do(func() {
		dir, err := os.UserCacheDir()
		if err != nil {
			dir = os.TempDir()
		}
		testPDFEng = NewPDF(PDFConfig{CacheDir: filepath.Join(dir, "stevedore", "wazero")})
	})
	if err := testPDFEng.Warm(); err != nil {
		t.Fatal(err)
	}
	return testPDFEng
}

// extractAll reads a fixture through the extractor with opts, returning the
// text, the sections and the reader's version and type.
func extractAll(t testing.TB, path string, opts Options) (string, []Section, *Reader) {
	t.Helper()
	text, secs, x, err := readAll(t, path, opts)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return text, secs, x
}

// readAll reads a file through the extractor with opts: its text, sections
// and Reader, or the error opening or reading it ended with.
func readAll(t testing.TB, path string, opts Options) (string, []Section, *Reader, error) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	x, err := opts.Open(f, filepath.Base(path), "")
	if err != nil {
		return "", nil, nil, err
	}
	defer x.Close()
	var b strings.Builder
	var secs []Section
	for {
		part, err := x.Next(4096)
		if err == io.EOF {
			return b.String(), secs, x, nil
		}
		if err != nil {
			return "", nil, x, err
		}
		b.WriteString(part)
		secs = append(secs, x.Sections()...)
	}
}

var wordRE = regexp.MustCompile(`[\p{L}\p{N}]+`)

func words(s string) []string {
	ws := wordRE.FindAllString(strings.ToLower(s), -1)
	return ws
}

// recall is the share of the reference's words (and of its bigrams) found
// in got, counted with multiplicity.
func recall(ref, got []string) float64 {
	have := map[string]int{}
	for _, w := range got {
		have[w]++
	}
	found := 0
	for _, w := range ref {
		if have[w] > 0 {
			have[w]--
			found++
		}
	}
	return float64(found) / float64(len(ref))
}

func bigrams(ws []string) []string {
	var out []string
	for i := 1; i < len(ws); i++ {
		out = append(out, ws[i-1]+" "+ws[i])
	}
	return out
}

// TestDocumentQuality measures each format's word and bigram recall
// against the text its fixture was made from, and what structured output
// adds: headings and pages on sections. It prints the table the README
// quotes.
func TestDocumentQuality(t *testing.T) {
	handbook, err := os.ReadFile(filepath.Join(sources, "source.txt"))
	if err != nil {
		t.Fatal(err)
	}
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(sources, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	cases := []struct {
		file, ref, kind, version string
		pages                    bool // sections carry pages
		minWord                  float64
	}{
		{"handbook.pdf", string(handbook), "application/pdf", PDFVersion, true, 0.98},
		{"handbook.docx", string(handbook), "application/vnd.openxmlformats-officedocument.wordprocessingml.document", OfficeVersion, false, 0.98},
		{"handbook.odt", string(handbook), "application/vnd.oasis.opendocument.text", OfficeVersion, false, 0.98},
		{"handbook.pptx", string(handbook), "application/vnd.openxmlformats-officedocument.presentationml.presentation", OfficeVersion, true, 0.98},
		{"handbook.html", string(handbook), "text/html", HTMLVersion, false, 0.98},
		{"handbook.epub", string(handbook), "application/epub+zip", EPUBVersion, false, 0.98},
		{"handbook.odp", string(handbook), "application/vnd.oasis.opendocument.presentation", OfficeVersion, true, 0.98},
		{"cranes.xlsx", read("cranes.csv"), xlsxType, OfficeVersion, false, 1},
		{"cranes.ods", read("cranes.csv"), "application/vnd.oasis.opendocument.spreadsheet", OfficeVersion, false, 1},
		{"suppliers-cp1252.csv", read("suppliers.csv"), "text/csv; charset=windows-1252", LegacyVersion, false, 1},
		// Made by the JavaScript libraries web applications embed (docx, exceljs;
		// scripts/fidelity/make-fidelity.mjs): a Word file's header, footer,
		// footnote, endnote and tracked changes as a reader sees them; a
		// spreadsheet's dates, times, percentages, decimals, booleans and
		// formulas as displayed, its hidden sheet and row left out.
		{"berths.docx", read("berths.txt"), "application/vnd.openxmlformats-officedocument.wordprocessingml.document", OfficeVersion, false, 1},
		{"arrivals.xlsx", read("arrivals.csv"), xlsxType, OfficeVersion, false, 1},
		// Python's email package: an HTML-only body in ISO-8859-1,
		// quoted-printable, an RFC 2047 subject, a PDF attached
		// (scripts/fidelity/make-email.py).
		{"berth-notice.eml", read("berth-notice.txt"), "message/rfc822", EmailVersion, true, 0.98},
	}
	t.Logf("%-22s %-6s %-6s %-8s %-8s %s", "file", "words", "bigram", "headings", "pages", "version (advanced)")
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			path := filepath.Join(fixtures, c.file)
			basic, _, x := extractAll(t, path, Options{PDF: testPDF(t)})
			if x.Type() != c.kind || x.Version() != c.version {
				t.Errorf("type %q version %q, want %q %q", x.Type(), x.Version(), c.kind, c.version)
			}
			ref := words(c.ref)
			wr, br := recall(ref, words(basic)), recall(bigrams(ref), bigrams(words(basic)))
			if wr < c.minWord {
				t.Errorf("word recall %.3f, want ≥ %.2f; text:\n%s", wr, c.minWord, basic)
			}
			adv, secs, ax := extractAll(t, path, Options{PDF: testPDF(t), Structured: true})
			if awr := recall(ref, words(adv)); awr < c.minWord {
				t.Errorf("advanced word recall %.3f, want ≥ %.2f; text:\n%s", awr, c.minWord, adv)
			}
			headings, pages := 0, 0
			for _, s := range secs {
				if len(s.Headings) > 0 {
					headings++
				}
				if s.Page > 0 {
					pages++
				}
			}
			if c.pages && pages == 0 {
				t.Errorf("no pages on the sections: %+v", secs)
			}
			if headings == 0 && c.version != LegacyVersion {
				t.Errorf("no heading paths on the advanced sections: %+v", secs)
			}
			t.Logf("%-22s %.3f  %.3f  %-8d %-8d %s", c.file, wr, br, headings, pages, ax.Version())
		})
	}
}
