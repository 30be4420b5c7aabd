package creds

import (
	"bytes"
	"encoding/xml"
	"errors"
	"strconv"
	"strings"
	"unicode/utf8"
)

// listDoc is what the planner reads of S3's ListBucketResult document (a
// ListObjectsV2 answer).
type listDoc struct {
	XMLName               xml.Name    `xml:"ListBucketResult"`
	IsTruncated           bool        `xml:"IsTruncated"`
	NextContinuationToken string      `xml:"NextContinuationToken"`
	EncodingType          string      `xml:"EncodingType"`
	Contents              []listEntry `xml:"Contents"`
}

// listEntry is one object of a listing, its fields as sent (a key is still
// URL-encoded when the document's EncodingType says "url").
type listEntry struct {
	Key          string `xml:"Key"`
	ETag         string `xml:"ETag"`
	LastModified string `xml:"LastModified"`
	Size         int64  `xml:"Size"`
}

// decodeListDoc decodes a ListBucketResult. encoding/xml costs about 14 µs
// per listed key (14 ms for a page of 1,000, as much as the SDK's own
// deserializer, which is built on it), more than the rest of planning a
// key; scanList reads the plain documents S3 sends in a fraction of that,
// and anything it does not handle (comments, CDATA, character references,
// carriage returns, other encodings, malformed input) goes to encoding/xml,
// whose answer is then the answer. FuzzListDoc holds scanList to
// encoding/xml's result on every input it accepts.
func decodeListDoc(body []byte) (*listDoc, error) {
	if doc, ok := scanList(body); ok {
		return doc, nil
	}
	doc := &listDoc{}
	if err := xml.Unmarshal(body, doc); err != nil {
		return nil, err
	}
	return doc, nil
}

// errUnusual stops scanList: the document needs encoding/xml.
var errUnusual = errors.New("not a plain document")

// listScanner reads one document as a sequence of tags and text.
type listScanner struct {
	b   []byte
	pos int
}

// scanList decodes body if it is a plain ListBucketResult: reporting false
// means "ask encoding/xml", never "invalid".
func scanList(body []byte) (*listDoc, bool) {
	s := &listScanner{b: body}
	if err := s.prolog(); err != nil {
		return nil, false
	}
	name, empty, err := s.startTag()
	if err != nil || string(name) != "ListBucketResult" {
		return nil, false
	}
	doc := &listDoc{}
	if empty {
		return doc, true
	}
	var seen fields
	err = s.children(name, false, func(child []byte, empty bool) error {
		switch string(child) {
		case "IsTruncated":
			v, err := s.field(child, &seen, 0, empty)
			if err == nil {
				doc.IsTruncated, err = parseBool(v)
			}
			return err
		case "NextContinuationToken":
			v, err := s.field(child, &seen, 1, empty)
			doc.NextContinuationToken = v
			return err
		case "EncodingType":
			v, err := s.field(child, &seen, 2, empty)
			doc.EncodingType = v
			return err
		case "Contents":
			e, err := s.entry(empty)
			doc.Contents = append(doc.Contents, e)
			return err
		}
		return s.skip(child, empty, 1)
	})
	if err != nil {
		return nil, false
	}
	return doc, true
}

// fields records which single-valued fields an element has had: a second
// one is left to encoding/xml.
type fields uint8

// entry reads a Contents element whose start tag was just read.
func (s *listScanner) entry(empty bool) (listEntry, error) {
	var e listEntry
	if empty {
		return e, nil
	}
	var seen fields
	err := s.children([]byte("Contents"), false, func(child []byte, empty bool) error {
		var err error
		switch string(child) {
		case "Key":
			e.Key, err = s.field(child, &seen, 0, empty)
		case "ETag":
			e.ETag, err = s.field(child, &seen, 1, empty)
		case "LastModified":
			e.LastModified, err = s.field(child, &seen, 2, empty)
		case "Size":
			var v string
			if v, err = s.field(child, &seen, 3, empty); err == nil {
				e.Size, err = parseInt(v)
			}
		default:
			err = s.skip(child, empty, 2)
		}
		return err
	})
	return e, err
}

// children calls f for each child element of the element parent, whose
// start tag was just read (f must consume the child), up to and including
// parent's end tag. Text between children must be white space unless
// anyText.
func (s *listScanner) children(parent []byte, anyText bool, f func(name []byte, empty bool) error) error {
	for {
		text, err := s.text()
		if err != nil || !anyText && len(bytes.TrimLeft(text, " \t\n")) != 0 {
			return errUnusual
		}
		if bytes.IndexByte(text, '&') >= 0 { // not kept, but its references must be well-formed
			if _, err := unescape(text); err != nil {
				return err
			}
		}
		if s.pos+1 < len(s.b) && s.b[s.pos+1] == '/' {
			return s.endTag(parent)
		}
		name, empty, err := s.startTag()
		if err != nil {
			return err
		}
		if err := f(name, empty); err != nil {
			return err
		}
	}
}

// field reads the text of a single-valued field, name (bit n of seen),
// whose start tag was just read, and its end tag.
func (s *listScanner) field(name []byte, seen *fields, n uint, empty bool) (string, error) {
	if *seen&(1<<n) != 0 {
		return "", errUnusual
	}
	*seen |= 1 << n
	if empty {
		return "", nil
	}
	v, err := s.text()
	if err != nil {
		return "", err
	}
	if err := s.endTag(name); err != nil {
		return "", err
	}
	if bytes.IndexByte(v, '&') >= 0 {
		return unescape(v)
	}
	return string(v), nil
}

// maxDepth bounds the nesting scanList follows (S3's documents have three
// levels); deeper is encoding/xml's.
const maxDepth = 16

// skip reads past an element the planner does not need, name at depth,
// whose start tag was just read.
func (s *listScanner) skip(name []byte, empty bool, depth int) error {
	if empty {
		return nil
	}
	if depth >= maxDepth {
		return errUnusual
	}
	return s.children(name, true, func(child []byte, empty bool) error { return s.skip(child, empty, depth+1) })
}

// declarations are the XML declarations scanList accepts; any other is
// encoding/xml's to read (or refuse).
var declarations = [][]byte{[]byte(`<?xml version="1.0" encoding="UTF-8"?>`), []byte(`<?xml version="1.0"?>`)}

// prolog reads white space and an optional plain XML declaration.
func (s *listScanner) prolog() error {
	s.space()
	if !bytes.HasPrefix(s.b[s.pos:], []byte("<?")) {
		return nil
	}
	for _, d := range declarations {
		if bytes.HasPrefix(s.b[s.pos:], d) {
			s.pos += len(d)
			s.space()
			return nil
		}
	}
	return errUnusual
}

func (s *listScanner) space() {
	for s.pos < len(s.b) && (s.b[s.pos] == ' ' || s.b[s.pos] == '\t' || s.b[s.pos] == '\n') {
		s.pos++
	}
}

// startTag reads "<Name attr="v" ...>" or "<Name .../>" at pos.
func (s *listScanner) startTag() (name []byte, empty bool, err error) {
	if s.pos >= len(s.b) || s.b[s.pos] != '<' {
		return nil, false, errUnusual
	}
	s.pos++
	if name = s.name(); len(name) == 0 {
		return nil, false, errUnusual
	}
	for {
		s.space()
		if s.pos >= len(s.b) {
			return nil, false, errUnusual
		}
		switch s.b[s.pos] {
		case '>':
			s.pos++
			return name, false, nil
		case '/':
			if s.pos+1 < len(s.b) && s.b[s.pos+1] == '>' {
				s.pos += 2
				return name, true, nil
			}
			return nil, false, errUnusual
		}
		if err := s.attr(); err != nil {
			return nil, false, err
		}
	}
}

// attr reads one attribute, name="value" (its value is not needed, but
// must be plain: no references, no '<').
func (s *listScanner) attr() error {
	if len(s.name()) == 0 || s.pos >= len(s.b) || s.b[s.pos] != '=' {
		return errUnusual
	}
	s.pos++
	if s.pos >= len(s.b) || s.b[s.pos] != '"' {
		return errUnusual
	}
	end := bytes.IndexByte(s.b[s.pos+1:], '"')
	if end < 0 {
		return errUnusual
	}
	v := s.b[s.pos+1 : s.pos+1+end]
	if bytes.ContainsAny(v, "&<\r") || !plain(v) {
		return errUnusual
	}
	s.pos += end + 2
	if s.pos < len(s.b) && s.b[s.pos] != ' ' && s.b[s.pos] != '>' && s.b[s.pos] != '/' {
		return errUnusual
	}
	return nil
}

// endTag reads "</name>" at pos.
func (s *listScanner) endTag(name []byte) error {
	if s.pos+1 >= len(s.b) || s.b[s.pos] != '<' || s.b[s.pos+1] != '/' {
		return errUnusual
	}
	s.pos += 2
	got := s.name()
	s.space()
	if !bytes.Equal(got, name) || s.pos >= len(s.b) || s.b[s.pos] != '>' {
		return errUnusual
	}
	s.pos++
	return nil
}

// name reads an element or attribute name without a namespace prefix:
// ASCII letters, digits, '_', '-' and '.', not starting with a digit, '-'
// or '.'.
func (s *listScanner) name() []byte {
	start := s.pos
	for s.pos < len(s.b) {
		c := s.b[s.pos]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || s.pos > start && (c >= '0' && c <= '9' || c == '-' || c == '.') {
			s.pos++
			continue
		}
		break
	}
	if s.pos < len(s.b) && s.b[s.pos] == ':' {
		return nil // a prefix: namespaces are encoding/xml's
	}
	return s.b[start:s.pos]
}

// text reads character data up to the next '<', as sent (references not
// replaced nor checked: the caller unescapes what it keeps, and children
// checks what it skips).
func (s *listScanner) text() ([]byte, error) {
	end := bytes.IndexByte(s.b[s.pos:], '<')
	if end < 0 {
		return nil, errUnusual
	}
	raw := s.b[s.pos : s.pos+end]
	s.pos += end
	if !plain(raw) {
		return nil, errUnusual
	}
	return raw, nil
}

// entities are XML's predefined entities.
var entities = map[string]byte{"amp": '&', "lt": '<', "gt": '>', "quot": '"', "apos": '\''}

func unescape(raw []byte) (string, error) {
	var b strings.Builder
	b.Grow(len(raw))
	for {
		i := bytes.IndexByte(raw, '&')
		if i < 0 {
			b.Write(raw)
			return b.String(), nil
		}
		b.Write(raw[:i])
		semi := bytes.IndexByte(raw[i:], ';')
		if semi < 0 {
			return "", errUnusual
		}
		c, ok := entities[string(raw[i+1:i+semi])]
		if !ok {
			return "", errUnusual // a character reference, or not well-formed
		}
		b.WriteByte(c)
		raw = raw[i+semi+1:]
	}
}

// plain reports whether text is valid UTF-8 of XML characters, with no
// carriage return (encoding/xml normalises line ends) and no ']]>'.
func plain(text []byte) bool {
	for i := 0; i < len(text); {
		c := text[i]
		if c < utf8.RuneSelf {
			if c < 0x20 && c != '\t' && c != '\n' {
				return false
			}
			i++
			continue
		}
		r, n := utf8.DecodeRune(text[i:])
		if r == utf8.RuneError && n == 1 || r == 0xFFFE || r == 0xFFFF || r >= 0xD800 && r <= 0xDFFF {
			return false
		}
		i += n
	}
	return !bytes.Contains(text, []byte("]]>"))
}

// parseBool and parseInt read a field's text as encoding/xml does.
func parseBool(v string) (bool, error) {
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(strings.TrimSpace(v))
	if err != nil {
		return false, errUnusual
	}
	return b, nil
}

func parseInt(v string) (int64, error) {
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if err != nil {
		return 0, errUnusual
	}
	return n, nil
}
