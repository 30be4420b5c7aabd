package worker

import (
	"archive/zip"
	"bytes"
	"strings"
	"testing"

	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/worker/extract"
	"golang.org/x/text/encoding/charmap"
)

// TestDocumentsThroughTheWorker: a windows-1252 CSV and an HTML page are
// indexed (they were skipped as not_utf8 and indexed as markup before);
// chunks, commits and object state carry the detected type and extractor.
func TestDocumentsThroughTheWorker(t *testing.T) {
	csv, _ := charmap.Windows1252.NewEncoder().String(strings.Repeat("nom;ville\nRené;Orléans\nZoë;Besançon\nFrançois;Périgueux\n", 20))
	html := "<html><head><script>var x = 1;</script></head><body><h1>Título</h1><p>Hola <b>mundo</b>.</p></body></html>"
	var docx bytes.Buffer
	zw := zip.NewWriter(&docx)
	w, _ := zw.Create("word/document.xml")
	w.Write([]byte(`<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body><w:p><w:r><w:t>Contract terms.</w:t></w:r></w:p></w:body></w:document>`))
	zw.Close()
	e := setup(t, map[string]string{"clients.csv": csv, "page.html": html, "contract.docx": docx.String()})
	e.submit(t, "job_docs", true)
	st := e.wait(t, "job_docs")
	if st.Status != schema.JobStatusCompleted || st.FilesIndexed != 3 {
		t.Fatalf("%+v", st)
	}
	byKey := map[string]string{}
	for _, c := range e.chunks(t) {
		byKey[c.Key] += c.Text
		if c.Key == "page.html" && (c.ExtractorVersion != extract.HTMLVersion || c.ContentType != "text/html") {
			t.Fatalf("html chunk %+v", c)
		}
		if c.Key == "clients.csv" && (c.ExtractorVersion != extract.LegacyVersion || c.ContentType != "text/plain; charset=windows-1252") {
			t.Fatalf("csv chunk %+v", c)
		}
	}
	if !strings.Contains(byKey["clients.csv"], "René;Orléans") || byKey["page.html"] != "Título\nHola mundo.\n" || byKey["contract.docx"] != "Contract terms.\n" {
		t.Fatalf("texts %q", byKey)
	}
	if s := e.state(t, "page.html"); s.ContentType != "text/html" || s.ExtractorVersion != extract.HTMLVersion {
		t.Fatalf("state %+v", s)
	}
}
