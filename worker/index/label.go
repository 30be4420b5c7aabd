package index

import (
	"math"
	"strings"
	"unicode"

	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/worker/chunk"
	"github.com/stevedore-dev/stevedore/worker/extract"
)

// labeler puts what the extractor knows about the document's structure on
// its chunks: the pages a chunk spans, its heading path (structured output
// only) and a CSV's header row. It also tells the chunk stream where
// sections end when the output is structured, so that chunks end there.
type labeler struct {
	headings bool // structured: heading paths on chunks, cuts at section ends
	csv      bool
	sections []extract.Section // from the current one on (sections[0] is in effect)
	written  int64             // text written to the stream so far
	header   string            // a CSV's first line
	headerOK bool              // the header is complete (its line ended)
	ocrPages int               // pages read by OCR so far
	ocrLast  int               // the last of them
}

// maxHeaderRow caps the CSV header repeated on chunks.
const maxHeaderRow = 4 << 10

// isTable reports whether a detected content type is CSV or TSV.
func isTable(contentType string) bool {
	return strings.HasPrefix(contentType, "text/csv") || strings.HasPrefix(contentType, "text/tab-separated-values")
}

// write adds part (with the sections that begin in it or before it) to the
// stream, marking section ends when structured.
func (l *labeler) write(st *chunk.Stream, part string, secs []extract.Section) error {
	if l.csv && !l.headerOK && len(l.header) < maxHeaderRow {
		line, _, complete := strings.Cut(part, "\n")
		l.header += line
		l.headerOK = complete
		if len(l.header) > maxHeaderRow {
			l.header = l.header[:maxHeaderRow]
		}
	}
	l.sections = append(l.sections, secs...)
	for _, s := range secs {
		if s.OCR && s.Page != l.ocrLast {
			l.ocrPages, l.ocrLast = l.ocrPages+1, s.Page
		}
	}
	end := l.written + int64(len(part))
	for _, s := range secs {
		if !l.headings || s.Offset < l.written || s.Offset >= end {
			continue
		}
		cut := int(s.Offset - l.written)
		if err := st.Write(part[:cut]); err != nil {
			return err
		}
		st.Boundary()
		part, l.written = part[cut:], s.Offset
	}
	l.written += int64(len(part))
	return st.Write(part)
}

// ocrOf says whether any of the sections a chunk spans was read by OCR,
// and their mean confidence (two decimals).
func ocrOf(secs []extract.Section) (bool, float64) {
	n, sum := 0, 0.0
	for _, s := range secs {
		if s.OCR {
			n, sum = n+1, sum+s.Confidence
		}
	}
	if n == 0 {
		return false, 0
	}
	return true, math.Round(sum/float64(n)*100) / 100
}

// label sets the chunk's pages, heading path and header row.
func (l *labeler) label(c *schema.Chunk) {
	if l.csv && c.Index > 0 {
		c.HeaderRow = strings.TrimRight(l.header, "\r")
	}
	if len(l.sections) == 0 {
		return
	}
	// The chunk is under the section in effect at its first visible byte.
	first := c.ByteOffset + int64(len(c.Text)-len(strings.TrimLeftFunc(c.Text, unicode.IsSpace)))
	end := c.ByteOffset + int64(len(c.Text))
	for len(l.sections) > 1 && l.sections[1].Offset <= first {
		l.sections = l.sections[1:]
	}
	cur := l.sections[0]
	if cur.Offset > first {
		return // text before the first section
	}
	c.PageStart, c.PageEnd = cur.Page, cur.Page
	spanned := []extract.Section{cur}
	for _, s := range l.sections[1:] {
		if s.Offset >= end {
			break
		}
		c.PageEnd = max(c.PageEnd, s.Page)
		spanned = append(spanned, s)
	}
	c.OCR, c.OCRConfidence = ocrOf(spanned)
	if l.headings && len(cur.Headings) > 0 {
		c.HeadingPath = cur.Headings
	}
}
