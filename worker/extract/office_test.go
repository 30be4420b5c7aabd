package extract

import (
	"archive/zip"
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stevedore-dev/stevedore/worker/extract/extracttest"
)

func zipOf(t *testing.T, files ...string) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := zip.NewWriter(&b)
	for i := 0; i+1 < len(files); i += 2 {
		w, err := zw.Create(files[i])
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte(files[i+1]))
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

const wordNS = `xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"`

func TestOfficeAndEPUB(t *testing.T) {
	docx := zipOf(t, "[Content_Types].xml", "<Types/>", "word/document.xml",
		`<w:document `+wordNS+`><w:body>`+
			`<w:p><w:r><w:t>Quarterly</w:t></w:r><w:r><w:t xml:space="preserve"> report</w:t></w:r></w:p>`+
			`<w:p><w:r><w:t>Revenue</w:t><w:tab/><w:t>grew.</w:t></w:r><w:r><w:delText>old</w:delText></w:r></w:p>`+
			`<w:tbl><w:tr><w:tc><w:p><w:r><w:t>Region</w:t></w:r></w:p></w:tc><w:tc><w:p><w:r><w:t>Sales</w:t></w:r></w:p></w:tc></w:tr>`+
			`<w:tr><w:tc><w:p><w:r><w:t>North</w:t></w:r></w:p></w:tc><w:tc><w:p><w:r><w:t>120</w:t></w:r></w:p></w:tc></w:tr></w:tbl>`+
			`</w:body></w:document>`)
	a := `xmlns:a="http://schemas.openxmlformats.org/drawingml/2006/main" xmlns:p="http://schemas.openxmlformats.org/presentationml/2006/main"`
	slide := func(text string) string {
		return `<p:sld ` + a + `><p:cSld><p:spTree><p:sp><p:txBody><a:p><a:r><a:t>` + text + `</a:t></a:r></a:p></p:txBody></p:sp></p:spTree></p:cSld></p:sld>`
	}
	pptx := zipOf(t, "ppt/presentation.xml", "<p:presentation/>",
		"ppt/slides/slide10.xml", slide("Tenth slide"), "ppt/slides/slide2.xml", slide("Second slide"), "ppt/slides/slide1.xml", slide("First slide"),
		"ppt/slides/_rels/slide1.xml.rels", `<Relationships><Relationship Id="rId2" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/notesSlide" Target="../notesSlides/notesSlide7.xml"/></Relationships>`,
		"ppt/notesSlides/notesSlide7.xml", `<p:notes `+a+`><a:p><a:r><a:t>Speaker notes of the first</a:t></a:r></a:p></p:notes>`)
	odt := zipOf(t, "mimetype", "application/vnd.oasis.opendocument.text", "content.xml",
		`<office:document-content xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0"><office:body><office:text>`+
			`<text:h>Title</text:h><text:p>Hello<text:s/>open <text:span>document</text:span></text:p></office:text></office:body></office:document-content>`)
	epub := zipOf(t, "mimetype", "application/epub+zip",
		"META-INF/container.xml", `<container><rootfiles><rootfile full-path="OEBPS/content.opf"/></rootfiles></container>`,
		"OEBPS/content.opf", `<package><manifest><item id="c2" href="ch2.xhtml"/><item id="c1" href="ch1.xhtml"/></manifest><spine><itemref idref="c1"/><itemref idref="c2"/></spine></package>`,
		"OEBPS/ch1.xhtml", `<html><body><h1>Chapter One</h1><p>It was a dark night.</p></body></html>`,
		"OEBPS/ch2.xhtml", `<html><body><h1>Chapter Two</h1><p>Morning came.</p></body></html>`)
	xlsx := zipOf(t,
		"xl/workbook.xml", `<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><sheets><sheet name="Sales" sheetId="1" r:id="rId1"/><sheet name="Notes" sheetId="2" r:id="rId2"/></sheets></workbook>`,
		"xl/_rels/workbook.xml.rels", `<Relationships><Relationship Id="rId1" Target="worksheets/sheet1.xml"/><Relationship Id="rId2" Target="worksheets/sheet2.xml"/></Relationships>`,
		"xl/sharedStrings.xml", `<sst><si><t>Region</t></si><si><t>Sales</t></si><si><r><t>Nor</t></r><r><t>th</t></r></si></sst>`,
		"xl/worksheets/sheet1.xml", `<worksheet><sheetData><row><c t="s"><v>0</v></c><c t="s"><v>1</v></c></row><row><c t="s"><v>2</v></c><c><v>120.5</v></c></row><row/></sheetData></worksheet>`,
		"xl/worksheets/sheet2.xml", `<worksheet><sheetData><row><c t="inlineStr"><is><t>checked by Zoë</t></is></c></row></sheetData></worksheet>`)
	tests := []struct {
		name    string
		data    []byte
		want    string
		version string
	}{
		{"xlsx: sheets in workbook order, rows as lines", xlsx, "Sales\nRegion | Sales\nNorth | 120.5\n\nNotes\nchecked by Zoë\n", OfficeVersion},
		{"docx", docx, "Quarterly report\nRevenue\tgrew.\nRegion | Sales\nNorth | 120\n", OfficeVersion},
		{"pptx: slides in order, notes after their slide", pptx, "First slide\n\nSpeaker notes of the first\n\nSecond slide\n\nTenth slide\n", OfficeVersion},
		{"odt", odt, "Title\nHello open document\n", OfficeVersion},
		{"epub: spine order", epub, "Chapter One\nIt was a dark night.\n\nChapter Two\nMorning came.\n", EPUBVersion},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, x, skip := read(t, tc.data, "doc", "")
			if skip != nil {
				t.Fatal(skip)
			}
			defer x.Close()
			if got != tc.want || x.Version() != tc.version {
				t.Fatalf("%s %s:\n got %q\nwant %q", x.Version(), x.Type(), got, tc.want)
			}
		})
	}
}

func TestBadContainers(t *testing.T) {
	// A part that decompresses far past its share: a zip bomb.
	var b bytes.Buffer
	zw := zip.NewWriter(&b)
	w, _ := zw.Create("word/document.xml")
	w.Write([]byte(`<w:document ` + wordNS + `><w:body><w:p><w:r><w:t>` + strings.Repeat("A", 8<<20) + `</w:t></w:r></w:p></w:body></w:document>`))
	zw.Close()
	bomb := b.Bytes()
	// Nesting far past the cap (varied, so the ratio cap does not fire first).
	var deep strings.Builder
	deep.WriteString(`<w:document ` + wordNS + `>`)
	for i := 0; i < 5000; i++ {
		fmt.Fprintf(&deep, "<w:p w:n=%q>", strconv.Itoa(i*7919%10007))
	}
	tests := []struct {
		name   string
		data   []byte
		reason string
	}{
		{"zip bomb (ratio)", bomb, ReasonDecompressedTooLarge},
		{"plain zip", zipOf(t, "a.txt", "hello"), ReasonBinary},
		{"encrypted office", zipOf(t, "EncryptionInfo", "x", "EncryptedPackage", "y"), ReasonEncrypted},
		{"truncated zip", zipOf(t, "word/document.xml", "<w:document/>")[:30], ReasonCorrupt},
		{"broken XML", zipOf(t, "word/document.xml", `<w:document `+wordNS+`><w:body><w:p>`), ReasonCorrupt},
		{"deep nesting", zipOf(t, "word/document.xml", deep.String()), ReasonCorrupt},
		{"undefined entity", zipOf(t, "word/document.xml", `<!DOCTYPE d [<!ENTITY a "aaaaaaaaaa">]><w:document `+wordNS+`><w:t>&a;&a;</w:t></w:document>`), ReasonCorrupt},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, x, skip := read(t, tc.data, "doc", "")
			x.Close()
			if skip == nil || skip.Reason != tc.reason {
				t.Fatalf("skip %v, want %s", skip, tc.reason)
			}
		})
	}
}

func FuzzContainer(f *testing.F) {
	var b bytes.Buffer
	zw := zip.NewWriter(&b)
	w, _ := zw.Create("word/document.xml")
	w.Write([]byte(`<w:document ` + wordNS + `><w:body><w:p><w:r><w:t>seed</w:t></w:r></w:p></w:body></w:document>`))
	zw.Close()
	f.Add(b.Bytes())
	f.Add(extracttest.HugeLevelODT())
	f.Add(extracttest.RisingLevelsODT(50))
	f.Add(extracttest.XLSX("<sst><si><t>a</t></si></sst>", `<worksheet><sheetData><row><c t="s"><v>0</v></c></row></sheetData></worksheet>`))
	f.Fuzz(func(t *testing.T, data []byte) {
		// Both modes: headings only matter in advanced. Whatever the
		// container claims, the text stays within its budget and heading
		// paths within nine levels.
		for _, structured := range []bool{false, true} {
			x, err := Options{Structured: structured}.Open(bytes.NewReader(data), "f.docx", "")
			if err != nil {
				continue
			}
			var text int64
			for {
				part, err := x.Next(512)
				if err != nil {
					break
				}
				text += int64(len(part))
				for _, sec := range x.Sections() {
					if len(sec.Headings) > maxHeadingLevel {
						t.Fatalf("a heading path %d deep", len(sec.Headings))
					}
				}
			}
			x.Close()
			if text > TextBudget(int64(len(data))) {
				t.Fatalf("%d bytes of text from %d bytes", text, len(data))
			}
		}
	})
}

// A Word file's comments are read with structured processing only; a
// spreadsheet's hidden sheet and hidden row are never read.
func TestCommentsAndHiddenCells(t *testing.T) {
	doc := filepath.Join(fixtures, "berths.docx")
	basic, _, _ := extractAll(t, doc, Options{})
	adv, _, _ := extractAll(t, doc, Options{Structured: true})
	const comment = "Comment (Reviewer): Check the pilotage figures against the tide tables."
	if strings.Contains(basic, "pilotage figures") || !strings.Contains(adv, comment) {
		t.Errorf("basic:\n%s\nadvanced:\n%s", basic, adv)
	}
	if strings.Contains(basic, "without any exception") {
		t.Errorf("a tracked deletion was read: %s", basic)
	}
	sheet, _, _ := extractAll(t, filepath.Join(fixtures, "arrivals.xlsx"), Options{})
	if strings.Contains(sheet, "Hidden Row Vessel") || strings.Contains(sheet, "Scratch") || strings.Contains(sheet, "scratch notes") {
		t.Errorf("hidden cells read:\n%s", sheet)
	}
}

// An e-mail's alternative is read once (its plain text), a forwarded
// message with its headers, and an attachment no extractor reads is named
// with why — never dropped silently.
func TestEmailParts(t *testing.T) {
	text, secs, _ := extractAll(t, filepath.Join(fixtures, "forwarded.eml"), Options{})
	for _, want := range []string{"Subject: Fwd: Tug availability", "Please plan the large arrivals around this.", "Subject: Tug availability",
		"Two tugs are in dry dock", "Attachment: empty.zip\n(not read: unsupported_type"} {
		if !strings.Contains(text, want) {
			t.Errorf("%q missing:\n%s", want, text)
		}
	}
	if strings.Count(text, "large arrivals") != 1 {
		t.Errorf("both alternatives read:\n%s", text)
	}
	headings := map[string]bool{}
	for _, s := range secs {
		headings[strings.Join(s.Headings, " > ")] = true
	}
	if !headings["Fwd: Tug availability > Attachment: empty.zip"] {
		t.Errorf("sections %+v", secs)
	}
}

// Hostile e-mail: more parts than the cap is too_large; an .eml that is
// not a message is corrupt_archive — each a skip, never a crash.
func TestHostileEmail(t *testing.T) {
	var b strings.Builder
	b.WriteString("Subject: many\nContent-Type: multipart/mixed; boundary=x\n\n")
	for i := range maxEmailParts + 1 {
		fmt.Fprintf(&b, "--x\nContent-Type: text/plain\n\npart %d\n", i)
	}
	b.WriteString("--x--\n")
	for name, c := range map[string]struct{ body, reason string }{
		"many.eml":    {b.String(), ReasonTooLarge},
		"garbage.eml": {"\x01\x02 not a message at all", ReasonCorrupt},
	} {
		x, err := Options{}.Open(strings.NewReader(c.body), name, "")
		if err == nil {
			for err == nil {
				_, err = x.Next(4096)
			}
			x.Close()
		}
		var s *Skip
		if !errors.As(err, &s) || s.Reason != c.reason {
			t.Errorf("%s: %v, want %s", name, err, c.reason)
		}
	}
}
