// Package extracttest makes documents for tests and benchmarks.
package extracttest

import (
	"bytes"
	"fmt"
	"strings"
)

// PDF returns a minimal PDF of n pages with a correct cross-reference
// table; page i shows the lines text(i) returns (Helvetica), or nothing
// when text is nil.
func PDF(n int, text func(i int) []string) []byte { return PDFWith(n, text, "") }

// FirstExtra is the object number of the first of PDFWith's extra objects
// in a PDF of n pages; page i is object 4+2i.
func FirstExtra(n int) int { return 4 + 2*n }

// PDFWith is PDF with more entries in the catalog (such as
// "/Outlines 8 0 R") and extra objects numbered from FirstExtra(n), for
// documents shaped as a hostile tenant would shape them.
func PDFWith(n int, text func(i int) []string, catalog string, extra ...string) []byte {
	var b bytes.Buffer
	var offsets []int
	obj := func(body string) {
		offsets = append(offsets, b.Len())
		fmt.Fprintf(&b, "%d 0 obj\n%s\nendobj\n", len(offsets), body)
	}
	b.WriteString("%PDF-1.4\n")
	kids := make([]string, n)
	for i := range kids {
		kids[i] = fmt.Sprintf("%d 0 R", 4+2*i)
	}
	obj("<< /Type /Catalog /Pages 2 0 R " + catalog + " >>")
	obj(fmt.Sprintf("<< /Type /Pages /Kids [%s] /Count %d >>", strings.Join(kids, " "), n))
	obj("<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
	for i := 0; i < n; i++ {
		var content strings.Builder
		if text != nil {
			content.WriteString("BT /F1 10 Tf 12 TL 56 760 Td")
			for _, line := range text(i) {
				fmt.Fprintf(&content, " (%s) Tj T*", line)
			}
			content.WriteString(" ET")
		}
		obj(fmt.Sprintf("<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>", 5+2*i))
		obj(fmt.Sprintf("<< /Length %d >>\nstream\n%s\nendstream", content.Len(), content.String()))
	}
	for _, body := range extra {
		obj(body)
	}
	return finishPDF(&b, offsets)
}

// finishPDF ends a PDF whose objects b holds (at offsets, numbered from 1,
// the catalog first) with its cross-reference table and trailer.
func finishPDF(b *bytes.Buffer, offsets []int) []byte {
	xref := b.Len()
	fmt.Fprintf(b, "xref\n0 %d\n0000000000 65535 f \n", len(offsets)+1)
	for _, o := range offsets {
		fmt.Fprintf(b, "%010d 00000 n \n", o)
	}
	fmt.Fprintf(b, "trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n", len(offsets)+1, xref)
	return b.Bytes()
}

// Prose returns n lines of ordinary English words (about 12 words each),
// different for each seed.
func Prose(seed, n int) []string {
	words := strings.Fields("the harbour master assigns every vessel a berth and a pilot who boards offshore while tugs " +
		"hold the hull against the fenders cranes lift containers from the hold onto trucks that carry them to the yard")
	lines := make([]string, n)
	for l := range lines {
		var sb strings.Builder
		for w := 0; w < 12; w++ {
			if w > 0 {
				sb.WriteByte(' ')
			}
			sb.WriteString(words[(seed*7+l*13+w*5)%len(words)])
		}
		lines[l] = sb.String()
	}
	return lines
}
