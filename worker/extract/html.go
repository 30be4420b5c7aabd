package extract

import (
	"bytes"
	"io"
	"strings"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
)

// htmlText streams the visible text of an HTML document: text outside
// script, style, template, noscript, head-only elements and comments, with
// a line break after each block element (paragraphs, headings, list items,
// table rows …), " | " between table cells and "- " before list items, and
// runs of whitespace collapsed as a browser does. The tokenizer reads its
// source incrementally, so memory does not grow with the document.
type htmlText struct {
	z       *html.Tokenizer
	skip    int // depth inside elements whose text is not shown
	out     bytes.Buffer
	space   bool // a space is pending between words
	newline bool // a line break is pending
	started bool
	err     error
}

func newHTMLText(r io.Reader) *htmlText { return &htmlText{z: html.NewTokenizer(r)} }

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
		return h.out.Read(p)
	}
	return 0, h.err
}

func (h *htmlText) step() {
	switch h.z.Next() {
	case html.ErrorToken:
		h.err = h.z.Err()
		if h.err == io.EOF && h.started {
			h.out.WriteByte('\n')
		}
	case html.StartTagToken, html.SelfClosingTagToken:
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
		case a == atom.Td || a == atom.Th:
			if h.started && !h.newline {
				h.pendingText(" | ")
			}
		case block[a]:
			h.newline = h.newline || h.started
		}
	case html.EndTagToken:
		name, _ := h.z.TagName()
		a := atom.Lookup(name)
		if hidden[a] {
			if h.skip > 0 {
				h.skip--
			}
			return
		}
		if block[a] || a == atom.Li {
			h.newline = h.newline || h.started
		}
	case html.TextToken:
		if h.skip > 0 {
			return
		}
		h.text(string(h.z.Text()))
	}
}

// pendingText writes s after any pending line break, with no space before it.
func (h *htmlText) pendingText(s string) {
	if h.newline {
		h.out.WriteByte('\n')
		h.newline = false
	}
	h.out.WriteString(s)
	h.space, h.started = false, true
}

// text adds words, collapsing whitespace.
func (h *htmlText) text(s string) {
	for i, w := range strings.Fields(s) {
		switch {
		case h.newline:
			h.out.WriteByte('\n')
			h.newline = false
		case (i > 0 || h.space || startsWithSpace(s)) && h.started:
			h.out.WriteByte(' ')
		}
		h.out.WriteString(w)
		h.started, h.space = true, false
	}
	if endsWithSpace(s) {
		h.space = true
	}
}

func startsWithSpace(s string) bool { return s != "" && strings.TrimLeft(s, " \t\r\n\f") != s }
func endsWithSpace(s string) bool   { return s != "" && strings.TrimRight(s, " \t\r\n\f") != s }
