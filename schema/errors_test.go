package schema

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// TestBoundAndQuote: reasons stay within MaxReasonBytes of valid UTF-8 even
// when the cut falls inside a rune or the text is not UTF-8, and a quoted
// tenant string shows control bytes escaped and at most 64 bytes of it.
func TestBoundAndQuote(t *testing.T) {
	for _, s := range []string{"short", strings.Repeat("é", 300), strings.Repeat("x", 255) + "€€", strings.Repeat("\xff", 1000)} {
		b := Bound(s)
		if len(b) > MaxReasonBytes || !utf8.ValidString(b) || (len(s) <= MaxReasonBytes && b != s) {
			t.Errorf("Bound(%.20q…) = %d bytes %.30q", s, len(b), b)
		}
	}
	if q := Quote("a\x01b"); q != `"a\x01b"` {
		t.Errorf("Quote = %s", q)
	}
	if q := Quote(strings.Repeat("ü", 100)); !strings.HasSuffix(q, `"…`) || len(q) > 64+3+len("…") {
		t.Errorf("Quote of 200 bytes = %d bytes: %s", len(q), q)
	}
}
