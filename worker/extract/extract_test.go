package extract

import "testing"

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
			r := Text([]byte(tc.in))
			if r.Text != tc.text || r.SkipReason != tc.skip {
				t.Fatalf("got %+v, want text %q skip %q", r, tc.text, tc.skip)
			}
		})
	}
}
