package extract

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
)

// htmlText streams the visible text of an HTML document: text outside
// script, style, template, noscript, head-only elements and comments, with
// a line break after each block element (paragraphs, headings, list items,
// table rows …), " | " between table cells and "- " before list items, and
// runs of whitespace collapsed as a browser does. The tokenizer reads its
// source incrementally, so memory does not grow with the document.
//
// Headings (h1–h6) set the heading path of the sections log; structured
// output (processing_type advanced) writes them as Markdown headings and
// tables as Markdown rows, with a separator row after the first.
type htmlText struct {
	z          *html.Tokenizer
	skip       int // depth inside elements whose text is not shown
	out        bytes.Buffer
	w          *bytes.Buffer // &out, or &head while a heading is read
	head       bytes.Buffer
	headLevel  int // level of the heading being read; 0: none
	structured bool
	log        *sectionLog
	base, read int64 // offset of this document's text in the whole; bytes read out
	cells      int   // cells so far in the table row (structured)
	rows       int   // rows so far in the table (structured)
	space      bool  // a space is pending between words
	newline    bool  // a line break is pending
	started    bool
	err        error
}

// newHTMLText reads the document r, whose text begins at offset base of
// the extracted text, recording headings in log (which may be nil).
func newHTMLText(r io.Reader, structured bool, log *sectionLog, base int64) *htmlText {
	h := &htmlText{z: html.NewTokenizer(&runBreaker{r: r}), structured: structured, log: log, base: base}
	h.z.SetMaxBuf(maxHTMLToken)
	h.w = &h.out
	return h
}

// Bounds on one HTML token, whatever the document: the tokenizer holds a
// whole token (a text node, a comment, a script) in memory.
const (
	// maxHTMLRun is the longest run of bytes without '<' or '>' passed to
	// the tokenizer as it is: a longer run (a text node of megabytes) gets
	// a "<wbr>" (a break opportunity, no visible text) inserted, so the
	// node reaches us in pieces of this size and its text is unchanged.
	maxHTMLRun = 64 << 10
	// maxHTMLToken caps what the tokenizer may buffer for one token that
	// a "<wbr>" does not split (a comment, a script, an attribute value):
	// a larger one skips the document (too_large).
	maxHTMLToken = 4 << 20
)

// runBreaker inserts "<wbr>" into runs of more than maxHTMLRun bytes
// without a tag delimiter, at a rune start.
type runBreaker struct {
	r       io.Reader
	run     int
	pending []byte // the rest of the last read, after an inserted break
}

var wbr = []byte("<wbr>")

func (b *runBreaker) Read(p []byte) (int, error) {
	if len(b.pending) == 0 {
		n, err := b.r.Read(p)
		return b.scan(p, n), err
	}
	n := copy(p, b.pending)
	b.pending = b.pending[n:]
	return b.scan(p, n), nil
}

// scan counts the run through p[:n]; where it grows past maxHTMLRun it
// keeps the rest of p for the next read and ends this one with "<wbr>"
// (when p has room; else the break waits for the next read).
func (b *runBreaker) scan(p []byte, n int) int {
	for i := 0; i < n; i++ {
		switch c := p[i]; {
		case c == '<' || c == '>':
			b.run = 0
		case b.run >= maxHTMLRun && utf8.RuneStart(c) && i+len(wbr) <= len(p):
			rest := append([]byte(nil), p[i:n]...)
			b.pending = append(rest, b.pending...)
			copy(p[i:], wbr)
			b.run = 0
			return i + len(wbr)
		default:
			b.run++
		}
	}
	return n
}

// headingLevel is 1–6 for h1–h6, else 0.
func headingLevel(a atom.Atom) int {
	switch a {
	case atom.H1:
		return 1
	case atom.H2:
		return 2
	case atom.H3:
		return 3
	case atom.H4:
		return 4
	case atom.H5:
		return 5
	case atom.H6:
		return 6
	}
	return 0
}

// maxHeadingText is how much of a heading is held back while it is read: a
// heading that never ends is let go as text past it.
const maxHeadingText = 64 << 10

// endHeading writes the heading read so far: the line break before it, then
// (at the offset its section begins) its text, as "## text" when structured.
func (h *htmlText) endHeading() {
	if h.headLevel == 0 {
		return
	}
	level := h.headLevel
	h.headLevel, h.w = 0, &h.out
	text := h.head.Bytes()
	lead := len(text) - len(bytes.TrimLeft(text, "\n"))
	h.out.Write(text[:lead])
	text = text[lead:]
	h.log.atHeading(h.base+h.read+int64(h.out.Len()), level, string(text))
	if h.structured && len(text) > 0 {
		h.out.WriteString(strings.Repeat("#", level) + " ")
	}
	h.out.Write(text)
	h.head.Reset()
}

// hidden elements' text is never shown.
var hidden = map[atom.Atom]bool{atom.Script: true, atom.Style: true, atom.Template: true, atom.Noscript: true,
	atom.Svg: true, atom.Math: true, atom.Iframe: true, atom.Object: true}

// block elements end a line.
var block = map[atom.Atom]bool{atom.P: true, atom.Div: true, atom.Br: true, atom.Li: true, atom.Tr: true, atom.Table: true,
	atom.H1: true, atom.H2: true, atom.H3: true, atom.H4: true, atom.H5: true, atom.H6: true, atom.Ul: true, atom.Ol: true,
	atom.Section: true, atom.Article: true, atom.Header: true, atom.Footer: true, atom.Nav: true, atom.Aside: true,
	atom.Blockquote: true, atom.Pre: true, atom.Hr: true, atom.Title: true, atom.Dt: true, atom.Dd: true, atom.Figcaption: true,
	atom.Main: true, atom.Form: true, atom.Fieldset: true, atom.Caption: true, atom.Address: true}

func (h *htmlText) Read(p []byte) (int, error) {
	for h.out.Len() < len(p) && h.err == nil {
		h.step()
	}
	if h.out.Len() > 0 {
		n, err := h.out.Read(p)
		h.read += int64(n)
		return n, err
	}
	return 0, h.err
}

func (h *htmlText) step() {
	switch h.z.Next() {
	case html.ErrorToken:
		h.err = h.z.Err()
		if errors.Is(h.err, html.ErrBufferExceeded) {
			h.err = &Skip{ReasonTooLarge, fmt.Sprintf("an HTML comment, script or tag over %d bytes", maxHTMLToken)}
			return
		}
		h.endHeading()
		if h.err == io.EOF && h.started {
			h.out.WriteByte('\n')
		}
	case html.StartTagToken, html.SelfClosingTagToken:
		h.startTag()
	case html.EndTagToken:
		h.endTag()
	case html.TextToken:
		if h.skip > 0 {
			return
		}
		h.text(string(h.z.Text()))
		if h.head.Len() > maxHeadingText {
			h.endHeading()
		}
	}
}

// startTag handles a start (or self-closing) tag.
func (h *htmlText) startTag() {
	name, _ := h.z.TagName()
	a := atom.Lookup(name)
	if hidden[a] {
		if tt := h.z.Token(); tt.Type == html.StartTagToken {
			h.skip++
		}
		return
	}
	switch {
	case a == atom.Li:
		h.newline = h.newline || h.started
		h.pendingText("- ")
	case h.structured && (a == atom.Td || a == atom.Th):
		if h.cells == 0 {
			h.pendingText("| ")
		} else {
			h.pendingText(" | ")
		}
		h.cells++
	case a == atom.Td || a == atom.Th:
		if h.started && !h.newline {
			h.pendingText(" | ")
		}
	case block[a]:
		h.newline = h.newline || h.started
		if a == atom.Table {
			h.rows = 0
		}
		if a == atom.Tr {
			h.cells = 0
		}
		if l := headingLevel(a); l > 0 && h.headLevel == 0 {
			h.headLevel, h.w = l, &h.head
		}
	}
}

// endTag handles an end tag.
func (h *htmlText) endTag() {
	name, _ := h.z.TagName()
	a := atom.Lookup(name)
	if hidden[a] {
		if h.skip > 0 {
			h.skip--
		}
		return
	}
	if a == atom.Tr && h.structured && h.cells > 0 {
		h.w.WriteString(" |")
		if h.rows == 0 {
			h.w.WriteString("\n|" + strings.Repeat(" --- |", h.cells))
		}
		h.rows++
		h.cells = 0
	}
	if headingLevel(a) > 0 {
		h.endHeading()
	}
	if block[a] || a == atom.Li {
		h.newline = h.newline || h.started
	}
}

// pendingText writes s after any pending line break, with no space before it.
func (h *htmlText) pendingText(s string) {
	if h.newline {
		h.w.WriteByte('\n')
		h.newline = false
	}
	h.w.WriteString(s)
	h.space, h.started = false, true
}

// text adds words, collapsing whitespace.
func (h *htmlText) text(s string) {
	for i, w := range strings.Fields(s) {
		switch {
		case h.newline:
			h.w.WriteByte('\n')
			h.newline = false
		case (i > 0 || h.space || startsWithSpace(s)) && h.started:
			h.w.WriteByte(' ')
		}
		h.w.WriteString(w)
		h.started, h.space = true, false
	}
	if endsWithSpace(s) {
		h.space = true
	}
}

func startsWithSpace(s string) bool { return s != "" && strings.TrimLeft(s, " \t\r\n\f") != s }
func endsWithSpace(s string) bool   { return s != "" && strings.TrimRight(s, " \t\r\n\f") != s }
