package extract

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"strings"
	"testing"
	"unicode/utf16"
	"unicode/utf8"
)

// text extracts a whole in-memory object through Open and Next.
func text(data []byte) (string, *Skip) {
	x, err := Open(bytes.NewReader(data))
	var sb strings.Builder
	for err == nil {
		var part string
		if part, err = x.Next(64 << 10); err == nil {
			sb.WriteString(part)
		}
	}
	var s *Skip
	if errors.As(err, &s) {
		return "", s
	}
	return sb.String(), nil
}

func TestText(t *testing.T) {
	tests := []struct {
		name, in, text, skip string
	}{
		{"utf8", "héllo", "héllo", ""},
		{"bom", "\xEF\xBB\xBFhi", "hi", ""},
		{"utf16le", "\xFF\xFEh\x00i\x00", "hi", ""},
		{"utf16be", "\xFE\xFF\x00h\x00i", "hi", ""},
		{"latin1", "caf\xe9 cr\xe8me", "", ReasonNotUTF8},
		{"png", "\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR", "", ReasonBinary},
		{"nul", "abc\x00def", "", ReasonBinary},
		{"json", `{"a": 1}`, `{"a": 1}`, ""},
		{"empty", "", "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, skip := text([]byte(tc.in))
			reason := ""
			if skip != nil {
				reason = skip.Reason
			}
			if got != tc.text || reason != tc.skip {
				t.Fatalf("got %q %v, want text %q skip %q", got, skip, tc.text, tc.skip)
			}
		})
	}
}

func TestStreamingReassembles(t *testing.T) {
	text := strings.Repeat("héllo wörld 😀 日本語テキスト\n", 300)
	u16le := []byte{0xFF, 0xFE}
	for _, u := range utf16.Encode([]rune(text)) {
		u16le = append(u16le, byte(u), byte(u>>8))
	}
	for _, in := range [][]byte{[]byte(text), append([]byte{0xEF, 0xBB, 0xBF}, text...), u16le} {
		for _, part := range []int{5, 7, 64, 4096} {
			x, err := Open(bytes.NewReader(in))
			if err != nil {
				t.Fatal(err)
			}
			var sb strings.Builder
			for {
				p, err := x.Next(part)
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				if !utf8.ValidString(p) || len(p) > part+4 {
					t.Fatalf("part of %d bytes, valid %v", len(p), utf8.ValidString(p))
				}
				sb.WriteString(p)
			}
			if sb.String() != text {
				t.Fatalf("part size %d: text differs", part)
			}
		}
	}
}

func TestLateInvalidUTF8IsASkip(t *testing.T) {
	in := strings.Repeat("plain ascii text ", 2000) + "caf\xe9"
	x, err := Open(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	for {
		_, err = x.Next(1024)
		if err != nil {
			break
		}
	}
	var s *Skip
	if !errors.As(err, &s) || s.Reason != ReasonNotUTF8 {
		t.Fatalf("got %v", err)
	}
}

func TestGzipDecompressedCap(t *testing.T) {
	var zb bytes.Buffer
	zw := gzip.NewWriter(&zb)
	_, _ = zw.Write(bytes.Repeat([]byte("zip bomb line\n"), 1<<16)) // 896 KiB from a few KiB
	_ = zw.Close()
	read := func(limit int64) error {
		r, gz, err := Decompress(bufio.NewReader(bytes.NewReader(zb.Bytes())), "logs/a.txt.gz", "", limit)
		if err != nil || !gz {
			t.Fatalf("gz %v err %v", gz, err)
		}
		x, err := Open(r)
		for err == nil {
			_, err = x.Next(4096)
		}
		return err
	}
	if err := read(1 << 20); !errors.Is(err, io.EOF) {
		t.Fatalf("within the cap: %v", err)
	}
	var s *Skip
	if err := read(64 << 10); !errors.As(err, &s) || s.Reason != ReasonDecompressedTooLarge {
		t.Fatalf("over the cap: %v", err)
	}
	if _, _, err := Decompress(bufio.NewReader(strings.NewReader("\x1f\x8bnot gzip")), "x", "", 1<<20); !errors.As(err, &s) || s.Reason != ReasonCorrupt {
		t.Fatalf("corrupt: %v", err)
	}
}

// TestSmallObjectsHoldSmallBuffers: a Reader's first part is at most
// firstPart, so an object that ends within it never takes a 1 MiB part
// buffer (a task in flight each held one); a larger object's later parts
// are as large as asked. The text is the same either way.
func TestSmallObjectsHoldSmallBuffers(t *testing.T) {
	for _, size := range []int{4 << 10, firstPart - 1, firstPart + 1, 3 << 20} {
		text := strings.Repeat("a few words of text.\n", size/21+1)[:size]
		x, err := Open(strings.NewReader(text))
		if err != nil {
			t.Fatal(err)
		}
		var got strings.Builder
		var parts []int
		for {
			part, err := x.Next(1 << 20)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			got.WriteString(part)
			parts = append(parts, len(part))
			if len(parts) == 1 && cap(x.buf) > firstPart+4 {
				t.Fatalf("%d bytes: the first part took a buffer of %d", size, cap(x.buf))
			}
		}
		if size < firstPart && cap(x.buf) > firstPart+4 {
			t.Fatalf("%d bytes: a buffer of %d", size, cap(x.buf))
		}
		if size > 2<<20 && (parts[0] > firstPart || parts[1] != 1<<20) {
			t.Fatalf("%d bytes: parts %v", size, parts)
		}
		x.Close()
		if got.String() != text {
			t.Fatalf("%d bytes: the text changed", size)
		}
	}
}
