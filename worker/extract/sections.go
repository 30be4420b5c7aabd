package extract

import (
	"bufio"
	"io"
	"slices"
	"sync"
)

// Section says where a part of a document's text begins and what it belongs
// to: a page (PDF pages, slides; 0 for formats without pages) and a heading
// path (HTML, Office and EPUB headings, PDF bookmarks, slide titles, sheet
// names). Extractors record one whenever either changes.
type Section struct {
	Offset   int64    // byte offset in the extracted text where it begins
	Page     int      // 1-based page or slide number; 0 when the format has none
	Headings []string // outermost first; empty before the first heading
	// OCR is set when the text was read from an image by OCR, with
	// Confidence, Tesseract's mean word confidence (0–1).
	OCR        bool
	Confidence float64
}

// maxHeadingBytes caps a heading's text on the path (a heading element that
// never ends must not hold back the document).
const maxHeadingBytes = 256

// sectionLog collects the sections an extractor records, for the Reader to
// hand out as the text passes. The extractor may run in its own goroutine:
// it records a section before it writes the section's first byte, so by the
// time the Reader has read past an offset, every section before it is here.
type sectionLog struct {
	mu       sync.Mutex
	list     []Section
	page     int
	headings []string
	ocr      bool    // the current page was read by OCR
	conf     float64 // with this mean confidence
}

// atPage records that page n begins at offset.
func (l *sectionLog) atPage(offset int64, n int) { l.atOCRPage(offset, n, -1) }

// atOCRPage records that page n, read by OCR with mean word confidence
// conf (-1: not read by OCR), begins at offset.
func (l *sectionLog) atOCRPage(offset int64, n int, conf float64) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.page, l.ocr, l.conf = n, conf >= 0, max(conf, 0)
	l.add(offset)
}

// atSlide records that slide n, titled title (may be empty), begins at
// offset: the title is the whole heading path.
func (l *sectionLog) atSlide(offset int64, n int, title string) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.page, l.headings = n, nil
	if title != "" {
		l.headings = []string{title}
	}
	l.add(offset)
}

// atHeading records a heading of level (1 = outermost) beginning at offset:
// the path keeps the headings above it and drops those at or below it.
// Levels are clamped to 1–9 (maxHeadingLevel), so a path is at most nine
// headings of at most maxHeadingBytes each, whatever a document claims.
func (l *sectionLog) atHeading(offset int64, level int, text string) {
	if l == nil {
		return
	}
	if len(text) > maxHeadingBytes {
		text = text[:completeRunes([]byte(text[:maxHeadingBytes]))]
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	level = max(1, min(level, len(l.headings)+1, maxHeadingLevel))
	l.headings = append(l.headings[:level-1:level-1], text)
	l.add(offset)
}

func (l *sectionLog) add(offset int64) {
	s := Section{Offset: offset, Page: l.page, Headings: slices.Clone(l.headings), OCR: l.ocr, Confidence: l.conf}
	if n := len(l.list); n > 0 && l.list[n-1].Offset == offset {
		l.list[n-1] = s // nothing between them: the later one describes the text
		return
	}
	l.list = append(l.list, s)
}

// take removes and returns the sections that begin before offset.
func (l *sectionLog) take(before int64) []Section {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	i := 0
	for i < len(l.list) && l.list[i].Offset < before {
		i++
	}
	out := slices.Clone(l.list[:i])
	l.list = slices.Delete(l.list, 0, i)
	return out
}

// docWriter is what the container and PDF extractors write text to: it
// knows the offset of the next byte it writes.
type docWriter struct {
	*bufio.Writer
	cw  *countWriter
	log *sectionLog
}

func newDocWriter(w io.Writer, log *sectionLog) *docWriter {
	cw := &countWriter{w: w}
	return &docWriter{Writer: bufio.NewWriterSize(cw, 64<<10), cw: cw, log: log}
}

// offset is the offset in the text of the next byte written.
func (d *docWriter) offset() int64 { return d.cw.n + int64(d.Buffered()) }

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
