// Package extract turns object bytes into text, or says why it cannot.
// Version 1 handles text: UTF-8 (with or without a byte-order mark) and
// UTF-16 with a byte-order mark, optionally gzip-compressed. Everything else
// is skipped with a reason, never retried: binary content (sniffed, not
// trusted from Content-Type), other encodings, objects over the size cap and
// archives that decompress past theirs.
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
	"io"
	"net/http"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// Version is part of every chunk ID: bump it when extraction output changes,
// so re-indexing produces new IDs instead of silently different text.
const Version = "text/1"

// Skip reasons.
const (
	ReasonBinary               = "unsupported_type"
	ReasonNotUTF8              = "not_utf8"
	ReasonTooLarge             = "too_large"
	ReasonDecompressedTooLarge = "decompressed_too_large"
	ReasonCorrupt              = "corrupt_archive"
	ReasonDirectory            = "directory_marker"
	ReasonUnsplittable         = "unsplittable"
)

// Skip is an error meaning the object is skipped, with a reason; no retry
// can change it.
type Skip struct{ Reason, Detail string }

func (s *Skip) Error() string { return s.Reason + ": " + s.Detail }

// sniffBytes is how much of an object decides whether it is text.
const sniffBytes = 8192

// Reader hands out an object's text as valid UTF-8.
type Reader struct {
	src   *bufio.Reader
	utf16 int // 0: UTF-8; 1: little endian; 2: big endian
	carry []byte
	buf   []byte
}

// Open sniffs the start of r. It returns a Reader, or the reason the object
// is not text.
func Open(r io.Reader) (*Reader, error) {
	br := bufio.NewReaderSize(r, sniffBytes)
	head, err := br.Peek(sniffBytes)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, bufio.ErrBufferFull) {
		return nil, asSkip(err)
	}
	x := &Reader{src: br}
	switch {
	case bytes.HasPrefix(head, []byte{0xEF, 0xBB, 0xBF}):
		_, _ = br.Discard(3)
		head = head[3:]
	case bytes.HasPrefix(head, []byte{0xFF, 0xFE}):
		_, _ = br.Discard(2)
		x.utf16 = 1
		return x, nil
	case bytes.HasPrefix(head, []byte{0xFE, 0xFF}):
		_, _ = br.Discard(2)
		x.utf16 = 2
		return x, nil
	}
	if len(head) > 0 {
		if ct := http.DetectContentType(head); !strings.HasPrefix(ct, "text/") && ct != "application/json" {
			return nil, &Skip{ReasonBinary, ct}
		}
	}
	if bytes.IndexByte(head, 0) >= 0 {
		return nil, &Skip{ReasonBinary, "contains NUL bytes"}
	}
	return x, nil
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

// Next returns the next part of the text, at most about max bytes, cut on a
// rune boundary; io.EOF after the last part.
func (x *Reader) Next(max int) (string, error) {
	if cap(x.buf) < max+4 {
		x.buf = make([]byte, max+4)
	}
	buf := x.buf[:copy(x.buf, x.carry)]
	n, err := io.ReadFull(x.src, x.buf[len(buf):max])
	buf = x.buf[:len(buf)+n]
	eof := errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
	if err != nil && !eof {
		return "", asSkip(err)
	}
	if x.utf16 != 0 {
		return x.nextUTF16(buf, eof)
	}
	end := len(buf)
	if !eof {
		// Hold back an incomplete rune at the end for the next part.
		for i := 1; i <= 3 && i <= len(buf); i++ {
			if c := buf[len(buf)-i]; c&0xC0 != 0x80 {
				if !utf8.FullRune(buf[len(buf)-i:]) {
					end = len(buf) - i
				}
				break
			}
		}
	}
	if !utf8.Valid(buf[:end]) {
		return "", &Skip{ReasonNotUTF8, "not valid UTF-8"}
	}
	x.carry = append(x.carry[:0], buf[end:]...)
	if eof && end == 0 {
		return "", io.EOF
	}
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
