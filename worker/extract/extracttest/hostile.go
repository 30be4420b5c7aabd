package extracttest

import (
	"archive/zip"
	"bytes"
	"compress/gzip"
	"fmt"
	"math/rand/v2"
	"strings"
)

// Documents shaped as a hostile tenant would shape them (issue 23). Each
// crashed a worker, took it past its memory limit or filled a shared
// stream before the extractors bounded what a document may claim; the
// extract tests and the end-to-end test index them.

// Zip returns a zip of the named parts: name, content, name, content …
func Zip(files ...string) []byte {
	var b bytes.Buffer
	zw := zip.NewWriter(&b)
	for i := 0; i+1 < len(files); i += 2 {
		w, err := zw.Create(files[i])
		if err != nil {
			panic(err)
		}
		if _, err := w.Write([]byte(files[i+1])); err != nil {
			panic(err)
		}
	}
	if err := zw.Close(); err != nil {
		panic(err)
	}
	return b.Bytes()
}

// Noise is n bytes drawn from alphabet, the same for the same seed:
// content that compresses poorly, so a document stays under the
// extractors' decompression-ratio cap and reaches the limit it is about.
func Noise(seed uint64, n int, alphabet string) string {
	rng := rand.New(rand.NewPCG(seed, 7))
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[rng.IntN(len(alphabet))]
	}
	return string(b)
}

// ODT is an OpenDocument text whose office:text holds body.
func ODT(body string) []byte {
	return Zip("mimetype", "application/vnd.oasis.opendocument.text", "content.xml",
		`<office:document-content xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0">`+
			`<office:body><office:text>`+body+`</office:text></office:body></office:document-content>`)
}

// HugeLevelODT has a heading of outline level 1,000,000,000 (it panicked
// with makeslice in advanced mode).
func HugeLevelODT() []byte {
	return ODT(`<text:h text:outline-level="1000000000">Deep</text:h><text:p>body text under a very deep heading</text:p>`)
}

// RisingLevelsODT has n headings of levels 1 … n (10,000 made heading
// paths 10,000 deep: 1.1 GiB).
func RisingLevelsODT(n int) []byte {
	var b strings.Builder
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, `<text:h text:outline-level="%d">h%d</text:h>`, i, i)
	}
	return ODT(b.String())
}

// XLSX is a workbook of one sheet with the given shared strings and sheet.
func XLSX(shared, sheet string) []byte {
	return Zip(
		"xl/workbook.xml", `<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><sheets><sheet name="S" sheetId="1" r:id="rId1"/></sheets></workbook>`,
		"xl/_rels/workbook.xml.rels", `<Relationships><Relationship Id="rId1" Target="worksheets/sheet1.xml"/></Relationships>`,
		"xl/sharedStrings.xml", shared, "xl/worksheets/sheet1.xml", sheet)
}

// SharedStringBombXLSX has one 160 KiB shared string referenced from
// 200,000 cells: ~32 GB of text from a ~1 MB file (4 GiB before a 1.3 MB
// one was found).
func SharedStringBombXLSX() []byte {
	var cells strings.Builder
	cells.WriteString("<worksheet><sheetData>")
	for r := 0; r < 4000; r++ {
		cells.WriteString("<row>")
		for c := 0; c < 50; c++ {
			fmt.Fprintf(&cells, `<c r="%s%d" t="s"><v>0</v></c>`, Noise(uint64(r*50+c), 2+r%3, "ABCDEFGHIJ"), r*50+c)
		}
		cells.WriteString("</row>")
	}
	cells.WriteString("</sheetData></worksheet>")
	return XLSX("<sst><si><t>"+Noise(1, 160<<10, "abcdefghijklmnopqrstuvwxyz ")+"</t></si></sst>", cells.String())
}

// EmptyEntriesXLSX has 32 MiB of empty <si/> shared strings (341 MiB of
// heap before).
func EmptyEntriesXLSX() []byte {
	var sst strings.Builder
	sst.WriteString("<sst>")
	for seed := uint64(0); sst.Len() < 32<<20-64; {
		sst.WriteString("<si/>")
		if sst.Len()%97 == 0 {
			seed++
			sst.WriteString("<!--" + Noise(seed, 3, "abcdefghij") + "-->") // enough disorder to stay under the ratio cap
		}
	}
	sst.WriteString("</sst>")
	return XLSX(sst.String(), "<worksheet/>")
}

// LongMimetypeZip has a 4 MiB mimetype part, with control bytes (it went
// whole into the skip reason: logs, object state, retries).
func LongMimetypeZip() []byte {
	return Zip("mimetype", "application/\x01"+Noise(2, 4<<20, "abcdefghijklmnopqrstuvwxyz\x01"), "content.xml", "<x/>")
}

// OutlineLoopPDF is a 2-page PDF whose second outline item names itself as
// its /First child and its /Next sibling (go-pdfium's recursive walk
// overflowed the stack: a fatal error, after ~1.4 GB).
func OutlineLoopPDF() []byte {
	x := FirstExtra(2)
	return PDFWith(2, func(i int) []string { return []string{fmt.Sprintf("Intro text on page %d", i+1), "Loop"} },
		fmt.Sprintf("/Outlines %d 0 R", x),
		fmt.Sprintf("<< /Type /Outlines /First %d 0 R /Last %d 0 R /Count 2 >>", x+1, x+2),
		fmt.Sprintf("<< /Title (Intro) /Parent %d 0 R /Next %d 0 R /Dest [4 0 R /Fit] >>", x, x+2),
		fmt.Sprintf("<< /Title (Loop) /Parent %d 0 R /Prev %d 0 R /First %d 0 R /Next %d 0 R /Dest [6 0 R /Fit] >>", x, x+1, x+2, x+2))
}

// HugeTextNodeHTML is a gzipped HTML page whose one paragraph is a text
// node of size bytes (64 MiB took 890 MiB of heap).
func HugeTextNodeHTML(size int) []byte {
	var b bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&b, gzip.BestCompression)
	zw.Write([]byte("<html><body><p>"))
	block := []byte(strings.Repeat("lorem ipsum dolor sit amet ", 1<<12))
	for n := 0; n < size; n += len(block) {
		zw.Write(block[:min(len(block), size-n)])
	}
	zw.Write([]byte("</p></body></html>"))
	zw.Close()
	return b.Bytes()
}

// LongRunText is n bytes of letters without whitespace (4 MiB took 453 MiB
// in the tokenizer and became one 4 MB chunk).
func LongRunText(n int) []byte { return bytes.Repeat([]byte("abcdefghij"), n/10) }

// HostileDoc is one hostile document and what indexing it must give: ""
// for indexed (its text is ordinary once the trick is handled), else the
// skip reason.
type HostileDoc struct {
	Name string
	Data []byte
	Want string
}

// Hostile is every hostile document of issue 23, with its expected outcome.
func Hostile() []HostileDoc {
	return []HostileDoc{
		{"outline-loop.pdf", OutlineLoopPDF(), ""},
		{"level-1e9.odt", HugeLevelODT(), ""},
		{"rising-levels.odt", RisingLevelsODT(10_000), ""},
		{"huge-node.html.gz", HugeTextNodeHTML(64 << 20), ""},
		{"long-run.txt", LongRunText(4 << 20), ""},
		{"shared-string-bomb.xlsx", SharedStringBombXLSX(), "text_too_large"},
		{"empty-entries.xlsx", EmptyEntriesXLSX(), "too_large"},
		{"long-mimetype.zip", LongMimetypeZip(), "unsupported_type"},
	}
}
