// Package extract turns object bytes into text, or says why it cannot.
// It handles text — UTF-8 (with or without a byte-order mark), UTF-16 (with
// a byte-order mark, or without one, told by its NUL pattern), and legacy
// single- and multi-byte encodings (windows-1252, ISO-8859-x, Shift_JIS,
// GB18030, EUC-JP/KR, Big5, KOI8-R …, detected with chardet and decoded
// with golang.org/x/text) — and HTML (visible text only, charset from the
// document), and zip containers: DOCX, PPTX, OpenDocument and EPUB (see
// office.go), optionally gzip-compressed. Everything else is skipped with a
// reason, never retried: binary content (sniffed, not trusted from
// Content-Type), undetectable encodings, objects over the size cap and
// archives that decompress past theirs.
//
// Each extractor has its own version (Reader.Version), part of every chunk
// ID: text that was indexed before keeps its IDs when another extractor
// changes.
//
// Objects are streamed: Open sniffs the first 8 KiB and Next hands out the
// text part by part, so an object's size never changes memory use. Invalid
// UTF-8 found after the first parts is reported by Next as a *Skip.
package extract

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/gabriel-vasile/mimetype"

	"github.com/saintfish/chardet"
	"github.com/stevedore-dev/stevedore/schema"
	"golang.org/x/net/html/charset"
	"golang.org/x/text/encoding"
	"golang.org/x/text/encoding/charmap"
	"golang.org/x/text/encoding/htmlindex"
	"golang.org/x/text/encoding/unicode/utf32"
	"golang.org/x/text/transform"
)

// Extractor versions, part of every chunk ID: bump one when its output
// changes, so re-indexing produces new IDs instead of silently different
// text.
const (
	Version       = "text/1"        // UTF-8 and UTF-16 text (unchanged since the first version)
	LegacyVersion = "text-legacy/1" // text decoded from a legacy encoding
	HTMLVersion   = "html/1"        // the visible text of an HTML document
)

// Skip reasons.
const (
	ReasonBinary               = "unsupported_type"
	ReasonNotUTF8              = "not_utf8"
	ReasonTooLarge             = "too_large"
	ReasonDecompressedTooLarge = "decompressed_too_large"
	ReasonCorrupt              = "corrupt_archive"
	ReasonDirectory            = "directory_marker"
	ReasonUnsplittable         = "unsplittable"
	ReasonEncrypted            = "encrypted"
)

// Reasons lists every skip reason, for metrics that start each at zero and
// keep their labels bounded.
var Reasons = []string{ReasonBinary, ReasonNotUTF8, ReasonTooLarge, ReasonDecompressedTooLarge, ReasonCorrupt, ReasonDirectory,
	ReasonUnsplittable, ReasonEncrypted, ReasonTextTooLarge, ReasonNoTextLayer, ReasonTimeout, ReasonOCRFailed}

// Skip is an error meaning the object is skipped, with a reason; no retry
// can change it.
type Skip struct{ Reason, Detail string }

// Error is the reason and detail, at most schema.MaxReasonBytes: a detail
// can carry a tenant's bytes (a part name, a MIME type).
func (s *Skip) Error() string { return schema.Bound(s.Reason + ": " + s.Detail) }

// sniffBytes is how much of an object decides whether it is text.
const sniffBytes = 8192

// Reader hands out an object's text as valid UTF-8.
type Reader struct {
	src     *bufio.Reader
	utf16   int // 0: UTF-8; 1: little endian; 2: big endian
	carry   []byte
	buf     []byte
	drained bool // the source has ended: no part needs a larger buffer
	version string
	kind    string
	closer  io.Closer // a spooled container and its text writer; nil for text
	log     *sectionLog
	pos     int64        // bytes of text handed out by Next
	in      *byteCounter // the object's bytes read so far (the text budget's base)
}

// Options say how objects are read.
type Options struct {
	// Structured is processing_type "advanced": headings become Markdown
	// headings ("## Methods") and set the heading path, tables become
	// Markdown rows, and the chunker prefers to cut at section ends. The
	// extractor version says so (e.g. "html/1+structured"), so the two
	// modes never share chunk IDs. Plain text reads the same either way.
	Structured bool
	// PDF reads PDFs; nil skips them as unsupported_type.
	PDF *PDF
	// OCR reads scanned PDF pages and image files; nil skips scans as
	// no_text_layer and images as unsupported_type, saying OCR is not
	// available. OCRLanguages are the languages to read ("+"-joined
	// Tesseract names; "" is OCR's default).
	OCR          *OCR
	OCRLanguages string
}

// structuredSuffix marks the extractor version of structured output.
const structuredSuffix = "+structured"

// Sections returns the sections that begin in the text handed out so far
// and were not returned before, in order. Plain text has none.
func (x *Reader) Sections() []Section { return x.log.take(x.pos) }

// Close releases what the Reader holds (a spooled container's temporary
// file and the goroutine writing its text). Safe to call on any Reader.
func (x *Reader) Close() error {
	if x == nil {
		return nil
	}
	if x.buf != nil {
		putBuf(x.buf)
		x.buf = nil
	}
	if x.closer == nil {
		return nil
	}
	return x.closer.Close()
}

// Part buffers are pooled: a 1 MiB buffer made (and zeroed) for every
// object cost more CPU than everything else done to a 4 KiB object. A
// Reader's first part is read into a small buffer (firstPart), so an
// object that ends within it never holds a large one: with a 1 MiB buffer
// per task in flight, the buffers were half of the worker's heap at 32
// tasks of 4 KiB objects. Each size has its own pool.
var smallBufs, largeBufs sync.Pool // of *[]byte

// firstPart is the most text a Reader's first part holds.
const firstPart = 128 << 10

func getBuf(n int) []byte {
	pool := &largeBufs
	if n <= firstPart+4 {
		pool, n = &smallBufs, firstPart+4
	}
	if p, ok := pool.Get().(*[]byte); ok && cap(*p) >= n {
		return (*p)[:n]
	}
	return make([]byte, n)
}

func putBuf(b []byte) {
	if cap(b) <= firstPart+4 {
		smallBufs.Put(&b)
	} else {
		largeBufs.Put(&b)
	}
}

// Version is the extractor that produced the text (Version, LegacyVersion,
// HTMLVersion, OfficeVersion or EPUBVersion).
func (x *Reader) Version() string { return x.version }

// Type is the detected content type, with the charset when it is not UTF-8
// (e.g. "text/plain; charset=windows-1252", "text/html").
func (x *Reader) Type() string { return x.kind }

// Open sniffs the start of r. It returns a Reader, or the reason the object
// is not text. See OpenObject.
func Open(r io.Reader) (*Reader, error) { return OpenObject(r, "", "") }

// OpenObject sniffs the start of r, an object named key with the given
// Content-Type (either may be empty): content decides first, then the
// Content-Type and the extension (an HTML page served as text/plain is
// still HTML when it looks like HTML; a .html key that is binary is not).
func OpenObject(r io.Reader, key, contentType string) (*Reader, error) {
	return Options{}.Open(r, key, contentType)
}

// Open is OpenObject with these options.
func (o Options) Open(r io.Reader, key, contentType string) (*Reader, error) {
	x, err := o.open(r, key, contentType)
	if err == nil && o.Structured && x.log != nil {
		x.version += structuredSuffix
	}
	return x, err
}

func (o Options) open(r io.Reader, key, contentType string) (*Reader, error) {
	in := &byteCounter{r: r}
	x, err := o.openCounted(in, key, contentType)
	if x != nil {
		x.in = in
	}
	return x, err
}

// The text budget of one object: extracted text may not exceed TextFloor
// plus TextRatio times the bytes the object's body gave (decompressed). Plain
// text never comes near it (a legacy encoding at most triples); a 1.3 MB
// workbook whose one shared string fills every cell, or a deflated PDF
// content stream repeated by reference, would give gigabytes of text, enough
// to fill CHUNKS for every tenant. Past the budget the object is skipped
// (text_too_large), not truncated: a document indexed in part would be
// reported as indexed while its end is missing from every search.
const (
	TextFloor = 16 << 20
	TextRatio = 16
)

// ReasonTextTooLarge is the skip reason of an object over its text budget.
const ReasonTextTooLarge = "text_too_large"

// TextBudget is the most text an object whose body gave n bytes may yield.
func TextBudget(n int64) int64 { return TextFloor + TextRatio*n }

// byteCounter counts the bytes read through it (atomically: a container's
// or PDF's text is written by another goroutine than the one calling Next).
type byteCounter struct {
	r io.Reader
	n atomic.Int64
}

func (c *byteCounter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

func (o Options) openCounted(r io.Reader, key, contentType string) (*Reader, error) {
	br := bufio.NewReaderSize(r, sniffBytes)
	head, err := br.Peek(sniffBytes)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, bufio.ErrBufferFull) {
		return nil, asSkip(err)
	}
	x := &Reader{src: br, version: Version, kind: "text/plain"}
	head, unicode := x.byteOrder(br, head)
	if unicode {
		return x, nil
	}
	sniffed := mimetype.Detect(head)
	if document, err := o.openDocument(x, br, head, sniffed); document || err != nil {
		if err != nil {
			return nil, err
		}
		return x, nil
	}
	if isEmail(sniffed, key, contentType) {
		x.log = &sectionLog{}
		src, closer, err := o.openEmail(br, x.log)
		if err != nil {
			return nil, err
		}
		x.src, x.closer, x.kind, x.version = bufio.NewReaderSize(src, sniffBytes), closer, "message/rfc822", EmailVersion
		return x, nil
	}
	if err := x.openText(br, head, sniffed, key, contentType, o.Structured); err != nil {
		return nil, err
	}
	return x, nil
}

// byteOrder reads a byte-order mark or UTF-32's shape off head. It reports
// whether that settled how x reads (UTF-16, UTF-32), and returns head
// without a UTF-8 BOM.
func (x *Reader) byteOrder(br *bufio.Reader, head []byte) ([]byte, bool) {
	if enc := utf32Of(head); enc != nil {
		// UTF-32 (by its byte-order mark, or three NULs in every four
		// bytes): decoded, as a legacy encoding is.
		x.src = bufio.NewReaderSize(transform.NewReader(br, enc.NewDecoder()), sniffBytes)
		x.version, x.kind = LegacyVersion, "text/plain; charset=utf-32"
		return head, true
	}
	switch {
	case bytes.HasPrefix(head, []byte{0xEF, 0xBB, 0xBF}):
		_, _ = br.Discard(3)
		return head[3:], false
	case bytes.HasPrefix(head, []byte{0xFF, 0xFE}):
		_, _ = br.Discard(2)
		x.utf16, x.kind = 1, "text/plain; charset=utf-16le"
		return head, true
	case bytes.HasPrefix(head, []byte{0xFE, 0xFF}):
		_, _ = br.Discard(2)
		x.utf16, x.kind = 2, "text/plain; charset=utf-16be"
		return head, true
	}
	return head, false
}

// openDocument opens a PDF or a zip container (Office, OpenDocument, EPUB)
// into x; it reports whether head was one.
func (o Options) openDocument(x *Reader, br *bufio.Reader, head []byte, sniffed *mimetype.MIME) (bool, error) {
	switch {
	case sniffed.Is("application/pdf"):
		if o.PDF == nil {
			return true, &Skip{ReasonBinary, "application/pdf (no PDF extractor configured)"}
		}
		ocr, err := o.OCR.newJob(o.OCRLanguages)
		if err != nil {
			return true, err
		}
		x.log = &sectionLog{}
		src, closer, err := o.PDF.open(br, o.Structured, x.log, ocr)
		if err != nil {
			return true, err
		}
		x.src, x.closer, x.kind, x.version = bufio.NewReaderSize(src, sniffBytes), closer, "application/pdf", PDFVersion
		return true, nil
	case slices.ContainsFunc(imageTypes, sniffed.Is):
		if o.OCR == nil {
			return true, &Skip{ReasonBinary, sniffed.String() + " (OCR is not available on this worker: install tesseract-ocr)"}
		}
		x.log = &sectionLog{}
		src, closer, err := o.OCR.openImage(br, sniffed.String(), o.OCRLanguages, x.log)
		if err != nil {
			return true, err
		}
		x.src, x.closer, x.kind, x.version = bufio.NewReaderSize(src, sniffBytes), closer, sniffed.String(), OCRVersion
		return true, nil
	case bytes.HasPrefix(head, []byte("PK\x03\x04")):
		x.log = &sectionLog{}
		src, closer, kind, version, err := openContainer(br, o.Structured, x.log)
		if err != nil {
			return true, err
		}
		x.src, x.closer, x.kind, x.version = src, closer, kind, version
		return true, nil
	}
	return false, nil
}

// openText sets x up to read text: UTF-16 without a byte-order mark, HTML
// in its own charset, UTF-8, or a detected legacy encoding; binary content
// is a Skip.
func (x *Reader) openText(br *bufio.Reader, head []byte, sniffed *mimetype.MIME, key, contentType string, structured bool) error {
	if order := utf16Order(head); order != 0 {
		x.utf16, x.kind = order, "text/plain; charset=utf-16"
		return nil
	}
	ct := "text/plain"
	if len(head) > 0 {
		// Content decides: mimetype names it; http.DetectContentType, which
		// calls any byte sequence without control characters text, keeps
		// legacy-encoded text (which mimetype may call binary) in.
		ct = http.DetectContentType(head)
		if !strings.HasPrefix(ct, "text/") && ct != "application/json" && !textual(sniffed) {
			return &Skip{ReasonBinary, sniffed.String()}
		}
	}
	x.kind = textKind(sniffed, key, contentType)
	if bytes.IndexByte(head, 0) >= 0 {
		return &Skip{ReasonBinary, "contains NUL bytes"}
	}
	if isHTML(ct, key, contentType) {
		// The document's own charset (BOM, <meta>, Content-Type) decides;
		// the text is then streamed out of the tokenizer.
		dec, err := charset.NewReader(br, contentType)
		if err != nil {
			return &Skip{ReasonNotUTF8, "HTML in an unknown charset: " + err.Error()}
		}
		x.log = &sectionLog{}
		x.src, x.version, x.kind = bufio.NewReaderSize(newHTMLText(dec, structured, x.log, 0), sniffBytes), HTMLVersion, "text/html"
		return nil
	}
	if utf8.Valid(head[:completeRunes(head)]) {
		return nil
	}
	enc, name, err := detectLegacy(head)
	if err != nil {
		return err
	}
	x.src = bufio.NewReaderSize(transform.NewReader(br, enc.NewDecoder()), sniffBytes)
	x.version, x.kind = LegacyVersion, x.kind+"; charset="+name
	return nil
}

// textual reports whether mimetype's type is text of some kind.
func textual(m *mimetype.MIME) bool {
	for ; m != nil; m = m.Parent() {
		if m.Is("text/plain") {
			return true
		}
	}
	return false
}

// textKind names text content: CSV, TSV, JSON and Markdown by their
// content, else by the Content-Type or the extension; plain text otherwise.
func textKind(sniffed *mimetype.MIME, key, contentType string) string {
	for _, t := range []string{"text/csv", "text/tab-separated-values", "application/json", "application/x-ndjson"} {
		if sniffed.Is(t) {
			return t
		}
	}
	ct, _, _ := strings.Cut(strings.ToLower(contentType), ";")
	switch ct = strings.TrimSpace(ct); ct {
	case "text/csv", "text/tab-separated-values", "text/markdown", "application/json", "application/x-ndjson":
		return ct
	}
	switch strings.ToLower(path.Ext(key)) {
	case ".csv":
		return "text/csv"
	case ".tsv":
		return "text/tab-separated-values"
	case ".md", ".markdown":
		return "text/markdown"
	case ".json":
		return "application/json"
	case ".ndjson", ".jsonl":
		return "application/x-ndjson"
	}
	return "text/plain"
}

// isHTML: the content sniffs as HTML, or the Content-Type or the extension
// say HTML of content that sniffs as text.
func isHTML(sniffed, key, contentType string) bool {
	if strings.HasPrefix(sniffed, "text/html") {
		return true
	}
	ct := strings.ToLower(contentType)
	if strings.HasPrefix(ct, "text/html") || strings.HasPrefix(ct, "application/xhtml") {
		return true
	}
	k := strings.ToLower(key)
	return strings.HasSuffix(k, ".html") || strings.HasSuffix(k, ".htm") || strings.HasSuffix(k, ".xhtml")
}

// completeRunes is the length of b without a rune cut at its end (b is a
// prefix of a longer text).
func completeRunes(b []byte) int {
	for i := 1; i <= 3 && i <= len(b); i++ {
		if c := b[len(b)-i]; c&0xC0 != 0x80 {
			if !utf8.FullRune(b[len(b)-i:]) {
				return len(b) - i
			}
			break
		}
	}
	return len(b)
}

var nul = []byte{0}

// utf32Of returns a UTF-32 decoder when head is UTF-32: it starts with a
// UTF-32 byte-order mark, or (mostly-ASCII text without one) three of every
// four bytes are NUL, in the same places. nil otherwise.
func utf32Of(head []byte) encoding.Encoding {
	switch {
	case bytes.HasPrefix(head, []byte{0xFF, 0xFE, 0, 0}):
		return utf32.UTF32(utf32.LittleEndian, utf32.ExpectBOM)
	case bytes.HasPrefix(head, []byte{0, 0, 0xFE, 0xFF}):
		return utf32.UTF32(utf32.BigEndian, utf32.ExpectBOM)
	}
	if len(head) < 16 {
		return nil
	}
	// Every code point is below 0x110000, so one byte is always NUL, the
	// next nearly always (but for emoji and rarer scripts); the low byte
	// is text, not control characters.
	n := len(head) / 4
	if bytes.Count(head[:n*4], nul) < n {
		return nil // fewer NULs than code points: not UTF-32 (the common case, counted fast)
	}
	var zero, ctrl [4]int
	for i := 0; i < n*4; i++ {
		switch c := head[i]; {
		case c == 0:
			zero[i%4]++
		case c < 0x20 && c != '\t' && c != '\n' && c != '\r':
			ctrl[i%4]++
		}
	}
	switch {
	case zero[3] == n && zero[2]*10 >= n*9 && (zero[0]+ctrl[0])*10 <= n:
		return utf32.UTF32(utf32.LittleEndian, utf32.IgnoreBOM)
	case zero[0] == n && zero[1]*10 >= n*9 && (zero[3]+ctrl[3])*10 <= n:
		return utf32.UTF32(utf32.BigEndian, utf32.IgnoreBOM)
	}
	return nil
}

// utf16Order tells UTF-16 without a byte-order mark by its NUL pattern:
// mostly-ASCII UTF-16 has a NUL in every other byte. 1: little endian,
// 2: big endian, 0: not UTF-16.
func utf16Order(head []byte) int {
	if len(head) < 16 {
		return 0
	}
	pairs := len(head) / 2
	if bytes.Count(head[:pairs*2], nul)*10 < pairs*7 {
		return 0 // too few NULs for either order (the common case, counted fast)
	}
	var even, odd int
	for i := 0; i+1 < len(head); i += 2 {
		if head[i] == 0 {
			even++
		}
		if head[i+1] == 0 {
			odd++
		}
	}
	switch {
	case odd*10 >= pairs*7 && even*10 <= pairs:
		return 1
	case even*10 >= pairs*7 && odd*10 <= pairs:
		return 2
	}
	return 0
}

// mostlyASCIILatin reports whether head reads as Western text in
// windows-1252: no control characters besides tab, line breaks and form
// feed, none of the five bytes windows-1252 leaves undefined, and at most
// one byte in six above 0x7F (Cyrillic or Greek single-byte text is mostly
// such bytes; it is not guessed at).
func mostlyASCIILatin(head []byte) bool {
	high := 0
	for _, c := range head {
		switch {
		case c < 0x20 && c != '\t' && c != '\n' && c != '\r' && c != '\f':
			return false
		case c == 0x81 || c == 0x8D || c == 0x8F || c == 0x90 || c == 0x9D:
			return false
		case c >= 0x80:
			high++
		}
	}
	return high > 0 && high*6 <= len(head)
}

// minConfidence is the least chardet confidence (0–100) a legacy encoding
// is trusted with.
const minConfidence = 30

// detectLegacy names the encoding of text that is not UTF-8.
func detectLegacy(head []byte) (encoding.Encoding, string, error) {
	best, err := chardet.NewTextDetector().DetectBest(head)
	if err != nil || best == nil || best.Confidence < minConfidence {
		if mostlyASCIILatin(head) {
			// WHATWG's fallback for unlabeled legacy text: mostly ASCII with
			// a few Latin letters (a Western CSV with accented names) is
			// windows-1252, which chardet scores low on such text.
			return charmap.Windows1252, "windows-1252", nil
		}
		return nil, "", &Skip{ReasonNotUTF8, "not valid UTF-8, and no other encoding could be told with confidence"}
	}
	label := strings.ToLower(best.Charset)
	if label == "gb-18030" { // chardet's name; WHATWG's label is gb18030
		label = "gb18030"
	}
	enc, err := htmlindex.Get(label)
	if err != nil || strings.HasPrefix(strings.ToLower(best.Charset), "utf-") {
		return nil, "", &Skip{ReasonNotUTF8, fmt.Sprintf("not valid UTF-8; detected %s, which cannot be decoded", best.Charset)}
	}
	name, _ := htmlindex.Name(enc)
	return enc, name, nil
}

// asSkip turns a read error that no retry can fix (a corrupt or oversized
// archive) into a *Skip; other errors pass through.
func asSkip(err error) error {
	var s *Skip
	if errors.As(err, &s) {
		return s
	}
	if errors.Is(err, gzip.ErrHeader) || errors.Is(err, gzip.ErrChecksum) || errors.Is(err, io.ErrUnexpectedEOF) {
		return &Skip{ReasonCorrupt, err.Error()}
	}
	return err
}

// Next returns the next part of the text, at most about max bytes (the
// first part at most firstPart), cut on a rune boundary; io.EOF after the
// last part.
func (x *Reader) Next(max int) (string, error) {
	switch {
	case x.buf == nil:
		max = min(max, firstPart)
	case x.drained:
		max = min(max, cap(x.buf)-4)
	}
	if cap(x.buf) < max+4 {
		if x.buf != nil {
			putBuf(x.buf)
		}
		x.buf = getBuf(max + 4)
	}
	buf := x.buf[:copy(x.buf, x.carry)]
	n, err := io.ReadFull(x.src, x.buf[len(buf):max])
	buf = x.buf[:len(buf)+n]
	eof := errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
	if err != nil && !eof {
		return "", asSkip(err)
	}
	x.drained = eof
	if x.utf16 != 0 {
		return x.nextUTF16(buf, eof)
	}
	end := len(buf)
	if !eof {
		end = completeRunes(buf) // hold back an incomplete rune for the next part
	}
	if !utf8.Valid(buf[:end]) {
		return "", &Skip{ReasonNotUTF8, "not valid UTF-8"}
	}
	x.carry = append(x.carry[:0], buf[end:]...)
	if eof && end == 0 {
		return "", io.EOF
	}
	if x.in != nil && x.pos+int64(end) > TextBudget(x.in.n.Load()) {
		return "", &Skip{ReasonTextTooLarge, fmt.Sprintf("over %d bytes of text from %d bytes of object (the budget is %d MiB + %d× the object)",
			x.pos+int64(end), x.in.n.Load(), TextFloor>>20, TextRatio)}
	}
	x.pos += int64(end)
	return string(buf[:end]), nil
}

func (x *Reader) nextUTF16(buf []byte, eof bool) (string, error) {
	end := len(buf) &^ 1
	if eof && end != len(buf) {
		return "", &Skip{ReasonNotUTF8, "odd-length UTF-16"}
	}
	u := make([]uint16, 0, end/2)
	for i := 0; i+1 < end; i += 2 {
		if x.utf16 == 2 {
			u = append(u, uint16(buf[i])<<8|uint16(buf[i+1]))
		} else {
			u = append(u, uint16(buf[i+1])<<8|uint16(buf[i]))
		}
	}
	// Hold back a high surrogate whose pair is in the next part.
	if !eof && len(u) > 0 && utf16.IsSurrogate(rune(u[len(u)-1])) && u[len(u)-1] < 0xDC00 {
		u = u[:len(u)-1]
		end -= 2
	}
	x.carry = append(x.carry[:0], buf[end:]...)
	if eof && len(u) == 0 {
		return "", io.EOF
	}
	return string(utf16.Decode(u)), nil
}

// Decompress wraps body in a gzip reader when the object is gzip-compressed
// (by Content-Encoding, a .gz key or the gzip magic number), and caps what
// it may decompress to at limit bytes: past it, reads fail with a *Skip.
func Decompress(body *bufio.Reader, key, contentEncoding string, limit int64) (io.Reader, bool, error) {
	magic, _ := body.Peek(2)
	if !strings.EqualFold(contentEncoding, "gzip") && !strings.HasSuffix(key, ".gz") && !bytes.Equal(magic, []byte{0x1f, 0x8b}) {
		return body, false, nil
	}
	zr, err := gzip.NewReader(body)
	if err != nil {
		return nil, true, &Skip{ReasonCorrupt, "not a gzip stream: " + err.Error()}
	}
	return &capped{r: zr, left: limit}, true, nil
}

// capped fails with a *Skip once more than its limit has been read.
type capped struct {
	r    io.Reader
	left int64
}

func (c *capped) Read(p []byte) (int, error) {
	if c.left < 0 {
		return 0, &Skip{ReasonDecompressedTooLarge, "decompresses to more than the cap"}
	}
	if int64(len(p)) > c.left+1 {
		p = p[:c.left+1]
	}
	n, err := c.r.Read(p)
	c.left -= int64(n)
	if c.left < 0 {
		return n, &Skip{ReasonDecompressedTooLarge, "decompresses to more than the cap"}
	}
	return n, err
}
