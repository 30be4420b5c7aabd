package extract

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"unicode/utf16"

	"golang.org/x/text/encoding"
	"golang.org/x/text/encoding/charmap"
	"golang.org/x/text/encoding/japanese"
	"golang.org/x/text/encoding/simplifiedchinese"
	"golang.org/x/text/encoding/unicode/utf32"
)

// read extracts a whole object through OpenObject and Next, in small parts.
func read(t *testing.T, data []byte, key, contentType string) (string, *Reader, *Skip) {
	t.Helper()
	x, err := OpenObject(bytes.NewReader(data), key, contentType)
	var sb strings.Builder
	for err == nil {
		var part string
		if part, err = x.Next(777); err == nil {
			sb.WriteString(part)
		}
	}
	var s *Skip
	if errors.As(err, &s) {
		return "", x, s
	}
	if !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	return sb.String(), x, nil
}

func encode(t *testing.T, e encoding.Encoding, s string) []byte {
	t.Helper()
	b, err := e.NewEncoder().Bytes([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestLegacyEncodings: text in a legacy encoding is detected, decoded and
// indexed (it was skipped as not_utf8 before), streamed part by part.
func TestLegacyEncodings(t *testing.T) {
	french := strings.Repeat("Le cœur déçu mais l'âme plutôt naïve, Louÿs rêva de crapaüter en canoë au delà des îles, près du mälström où brûlent les novæ. ", 6)
	russian := strings.Repeat("Съешь же ещё этих мягких французских булок, да выпей чаю. В чащах юга жил бы цитрус? Да, но фальшивый экземпляр! ", 6)
	japaneseText := strings.Repeat("いろはにほへと ちりぬるを わかよたれそ つねならむ うゐのおくやま けふこえて あさきゆめみし ゑひもせす。日本語の文章です。", 6)
	chinese := strings.Repeat("我能吞下玻璃而不伤身体。这是一个用于测试中文编码检测的句子，包含常用汉字和标点符号。", 6)
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"windows-1252 CSV", encode(t, charmap.Windows1252, "name;city\n"+strings.ReplaceAll(french, ". ", ";Orléans\n")), "name;city\n" + strings.ReplaceAll(french, ". ", ";Orléans\n")},
		{"Shift_JIS", encode(t, japanese.ShiftJIS, japaneseText), japaneseText},
		{"GB18030", encode(t, simplifiedchinese.GB18030, chinese), chinese},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, x, skip := read(t, tc.data, "data.txt", "")
			if skip != nil {
				t.Fatalf("skipped: %v", skip)
			}
			if got != tc.want {
				t.Fatalf("decoded as %s:\n got %.120q\nwant %.120q", x.Type(), got, tc.want)
			}
			if x.Version() != LegacyVersion || !strings.Contains(x.Type(), "charset=") {
				t.Fatalf("version %s type %s", x.Version(), x.Type())
			}
		})
	}
	// chardet tells Cyrillic single-byte encodings with little confidence
	// (KOI8-R: 8 of 100; windows-1251 is taken for Hebrew): such text is
	// skipped with the reason rather than indexed as mojibake.
	if _, _, skip := read(t, encode(t, charmap.KOI8R, russian), "", ""); skip == nil || skip.Reason != ReasonNotUTF8 {
		t.Fatalf("KOI8-R: %v", skip)
	}
	// UTF-16 without a byte-order mark, told by its NUL pattern.
	var le []byte
	for _, u := range utf16.Encode([]rune(french)) {
		le = append(le, byte(u), byte(u>>8))
	}
	if got, x, skip := read(t, le, "", ""); skip != nil || got != french || x.Version() != Version {
		t.Fatalf("UTF-16LE without BOM: %v %.60q %s", skip, got, x.Version())
	}
	// UTF-8 text is untouched: same extractor, same chunk IDs as before.
	if got, x, _ := read(t, []byte(french), "", ""); got != french || x.Version() != Version || x.Type() != "text/plain" {
		t.Fatalf("UTF-8: %s %s", x.Version(), x.Type())
	}
	// Bytes no detector can place are still skipped with the reason.
	noise := make([]byte, 600)
	for i := range noise {
		noise[i] = byte(0x80 + (i*37)%0x7f)
	}
	if _, _, skip := read(t, noise, "", ""); skip == nil || skip.Reason != ReasonNotUTF8 && skip.Reason != ReasonBinary {
		t.Fatalf("noise: %v", skip)
	}
}

// TestUTF32: with a byte-order mark or told by its NUL pattern, UTF-32 is
// decoded (it was read as UTF-16 or skipped before).
func TestUTF32(t *testing.T) {
	text := "UTF-32 text: naïve café, 日本語, 🚀.\n"
	for name, enc := range map[string]encoding.Encoding{
		"le with bom": utf32.UTF32(utf32.LittleEndian, utf32.UseBOM), "be with bom": utf32.UTF32(utf32.BigEndian, utf32.UseBOM),
		"le": utf32.UTF32(utf32.LittleEndian, utf32.IgnoreBOM), "be": utf32.UTF32(utf32.BigEndian, utf32.IgnoreBOM),
	} {
		t.Run(name, func(t *testing.T) {
			data, err := enc.NewEncoder().Bytes([]byte(text))
			if err != nil {
				t.Fatal(err)
			}
			got, x, skip := read(t, data, "a.txt", "")
			if skip != nil {
				t.Fatalf("skipped: %v", skip)
			}
			if got != text || x.Type() != "text/plain; charset=utf-32" {
				t.Fatalf("got %q (%s)", got, x.Type())
			}
		})
	}
}
