package worker

import (
	"archive/zip"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/worker/extract"
	"github.com/stevedore-dev/stevedore/worker/token"
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
		if c.Key == "clients.csv" && (c.ExtractorVersion != extract.LegacyVersion || c.ContentType != "text/csv; charset=windows-1252" || (c.Index > 0) != (c.HeaderRow == "nom;ville")) {
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

// TestStructuredDocumentsThroughTheWorker: the handbook fixtures indexed
// basic, then advanced. Basic chunks of the PDF carry their pages and no
// heading path; advanced chunks of every format carry heading paths (and
// pages for the PDF and the slides), their extractor version says
// "+structured", and the switch re-indexes despite skip_existing (a basic
// index does not stand in for an advanced one), tombstoning the basic
// chunks.
func TestStructuredDocumentsThroughTheWorker(t *testing.T) {
	objects := map[string]string{}
	for _, name := range []string{"handbook.pdf", "handbook.docx", "handbook.pptx", "handbook.html", "handbook.epub", "cranes.xlsx"} {
		data, err := os.ReadFile(filepath.Join("../scripts/testdata/corpus/documents", name))
		if err != nil {
			t.Fatal(err)
		}
		objects[name] = string(data)
	}
	pdf := extract.NewPDF(extract.PDFConfig{CacheDir: wazeroCache()})
	t.Cleanup(func() { pdf.Close() })
	e := setup(t, objects, func(c *Config) { c.PDF = pdf })
	e.submit(t, "job_basic", true)
	if st := e.wait(t, "job_basic"); st.Status != schema.JobStatusCompleted || st.FilesIndexed != int64(len(objects)) {
		t.Fatalf("%+v", st)
	}
	for _, c := range e.chunks(t) {
		if len(c.HeadingPath) > 0 {
			t.Fatalf("basic chunk with a heading path: %+v", c)
		}
		if c.Key == "handbook.pdf" && (c.PageStart < 1 || c.PageEnd < c.PageStart || c.ContentType != "application/pdf" || c.ExtractorVersion != extract.PDFVersion) {
			t.Fatalf("pdf chunk %+v", c)
		}
	}
	e.submitJob(t, &schema.Job{JobID: "job_advanced", Org: e.org.ID, Collection: "docs", IntegrationID: e.in.ID, Kind: schema.JobBucket, Bucket: bucket,
		Region: "us-east-1", SkipExisting: true, ReadSettings: schema.ReadSettings{ProcessingType: schema.ProcessingAdvanced}, CreatedAt: time.Now()})
	if st := e.wait(t, "job_advanced"); st.Status != schema.JobStatusCompleted || st.FilesIndexed != int64(len(objects)) {
		t.Fatalf("advanced job did not re-index: %+v", st)
	}
	ids, _, _ := visible(t, e)
	headed := map[string]int{}
	var sawTable bool
	for _, c := range e.chunks(t) {
		if !strings.HasSuffix(c.ExtractorVersion, "+structured") {
			if ids[c.ChunkID] {
				t.Fatalf("a basic chunk is still visible after the advanced index: %+v", c)
			}
			continue
		}
		if !ids[c.ChunkID] {
			t.Fatalf("an advanced chunk is not visible: %+v", c)
		}
		if len(c.HeadingPath) > 0 {
			headed[c.Key]++
		}
		if (c.Key == "handbook.pdf" || c.Key == "handbook.pptx") && c.PageStart < 1 {
			t.Fatalf("advanced chunk without pages: %+v", c)
		}
		sawTable = sawTable || strings.Contains(c.Text, "| --- |")
	}
	for name := range objects {
		if headed[name] == 0 {
			t.Errorf("%s: no advanced chunk has a heading path", name)
		}
	}
	if !sawTable {
		t.Error("no Markdown table row in the advanced chunks")
	}
	if s := e.state(t, "handbook.docx"); s.ProcessingType != schema.ProcessingAdvanced || s.ExtractorVersion != extract.OfficeVersion+"+structured" {
		t.Fatalf("state %+v", s)
	}
}

// wazeroCache is where tests keep PDFium's compiled module.
func wazeroCache() string {
	dir, err := os.UserCacheDir()
	if err != nil {
		dir = os.TempDir()
	}
	return filepath.Join(dir, "stevedore", "wazero")
}

// TestO200kEncodingThroughTheWorker: a job naming o200k_base counts with
// it (exactly: each chunk's count is the encoding's count of its text),
// says so on its chunks, gets IDs of its own, and is not taken as already
// indexed by a cl100k_base index of the same bytes.
func TestO200kEncodingThroughTheWorker(t *testing.T) {
	body := strings.Repeat("naïve café résumé helloWorld HTTPServer don't 12345 ", 200)
	e := setup(t, map[string]string{"a.txt": body})
	e.submit(t, "job_cl100k", true)
	if st := e.wait(t, "job_cl100k"); st.FilesIndexed != 1 {
		t.Fatalf("%+v", st)
	}
	e.submitJob(t, &schema.Job{JobID: "job_o200k", Org: e.org.ID, Collection: "docs", IntegrationID: e.in.ID, Kind: schema.JobBucket, Bucket: bucket,
		Region: "us-east-1", SkipExisting: true, ReadSettings: schema.ReadSettings{Encoding: schema.EncodingO200k}, CreatedAt: time.Now()})
	st := e.wait(t, "job_o200k")
	if st.FilesIndexed != 1 {
		t.Fatalf("o200k job did not index: %+v", st)
	}
	o200k, _ := token.Get(token.O200kBase)
	ids, _, _ := visible(t, e)
	var tokens int64
	for _, c := range e.chunks(t) {
		if c.JobID != "job_o200k" {
			if ids[c.ChunkID] {
				t.Fatalf("a cl100k_base chunk is still visible: %+v", c)
			}
			continue
		}
		if c.Encoding != token.O200kBase || c.ExtractorVersion != extract.Version+"@o200k_base" || c.TokenCount != o200k.Count(c.Text) || !ids[c.ChunkID] {
			t.Fatalf("o200k chunk %+v", c)
		}
		tokens += int64(c.TokenCount)
	}
	if want := int64(o200k.Count(body)); tokens != want || st.TokensUsed != want {
		t.Fatalf("tokens %d (job says %d), want %d", tokens, st.TokensUsed, want)
	}
}
