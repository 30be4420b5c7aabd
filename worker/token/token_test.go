package token

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"golang.org/x/text/encoding/charmap"
)

type golden struct {
	Encoding string `json:"encoding"`
	Cases    []struct {
		Text string `json:"text"`
		IDs  []int  `json:"ids"`
	} `json:"cases"`
	Files []struct {
		Name    string `json:"name"`
		Count   int    `json:"count"`
		Charset string `json:"charset"` // set for a corpus file in a legacy encoding (windows-1252)
	} `json:"files"`
}

func loadGolden(t testing.TB) (*Encoding, golden) { return loadGoldenFor(t, Cl100kBase) }

// loadGoldenFor loads an encoding and its golden file
// (testdata/<name without _base>_golden.json).
func loadGoldenFor(t testing.TB, name string) (*Encoding, golden) {
	t.Helper()
	enc, err := Get(name)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile("testdata/" + strings.TrimSuffix(name, "_base") + "_golden.json")
	if err != nil {
		t.Fatal(err)
	}
	var g golden
	if err := json.Unmarshal(raw, &g); err != nil {
		t.Fatal(err)
	}
	return enc, g
}

// TestGoldenAgainstTiktoken compares every case with the token IDs produced by
// the reference implementation (scripts/tiktoken-golden.sh), for each
// encoding.
func TestGoldenAgainstTiktoken(t *testing.T) {
	for _, name := range Names {
		t.Run(name, func(t *testing.T) { testGolden(t, name) })
	}
}

func testGolden(t *testing.T, name string) {
	enc, g := loadGoldenFor(t, name)
	if g.Encoding != name {
		t.Fatalf("golden file is for %q", g.Encoding)
	}
	if len(g.Cases) < 3000 {
		t.Fatalf("golden file has %d cases, want >= 3000", len(g.Cases))
	}
	for i, c := range g.Cases {
		got := enc.Encode(c.Text)
		if !slices.Equal(got, c.IDs) && !(len(got) == 0 && len(c.IDs) == 0) {
			t.Errorf("case %d %q:\n got  %v\n want %v", i, c.Text, got, c.IDs)
			continue
		}
		if n := enc.Count(c.Text); n != len(c.IDs) {
			t.Errorf("case %d %q: Count = %d, want %d", i, c.Text, n, len(c.IDs))
		}
	}
}

func TestCorpusCounts(t *testing.T) {
	for _, name := range Names {
		t.Run(name, func(t *testing.T) { testCorpus(t, name) })
	}
}

func testCorpus(t *testing.T, name string) {
	enc, g := loadGoldenFor(t, name)
	for _, f := range g.Files {
		data, err := os.ReadFile(filepath.Join("..", "..", "scripts", "testdata", "corpus", filepath.FromSlash(f.Name)))
		if err != nil {
			t.Fatal(err)
		}
		if f.Charset == "windows-1252" {
			if data, err = charmap.Windows1252.NewDecoder().Bytes(data); err != nil {
				t.Fatal(err)
			}
		}
		if n := enc.Count(string(data)); n != f.Count {
			t.Errorf("%s: Count = %d, want %d (tiktoken)", f.Name, n, f.Count)
		}
	}
}

// TestWhitespaceOnlyLines pins the case one Go port gets wrong.
func TestWhitespaceOnlyLines(t *testing.T) {
	enc, _ := Get(Cl100kBase)
	var pieces []string
	Pieces("a\n  \nb", func(p string) bool { pieces = append(pieces, p); return true })
	if want := []string{"a", "\n  \n", "b"}; !slices.Equal(pieces, want) {
		t.Fatalf("pieces = %q, want %q", pieces, want)
	}
	if n := enc.Count("a\n  \nb"); n != 3 {
		t.Fatalf("Count = %d, want 3", n)
	}
}

// TestMergeHeapMatchesScan checks the two merge strategies agree.
func TestMergeHeapMatchesScan(t *testing.T) {
	enc, g := loadGolden(t)
	for _, c := range g.Cases {
		Pieces(c.Text, func(p string) bool {
			if len(p) < 2 || len(p) > heapThreshold {
				return true
			}
			var a, b []string
			enc.mergeScan(p, func(s string) { a = append(a, s) })
			enc.mergeHeap(p, func(s string) { b = append(b, s) })
			if !slices.Equal(a, b) {
				t.Errorf("piece %q: scan %q heap %q", p, a, b)
			}
			return true
		})
	}
}

func FuzzPieces(f *testing.F) {
	for _, s := range []string{"", "a\n  \nb", "it's 123456 ok!!\r\n", "日本 🚀  x", "\xff\xfe"} {
		f.Add(s)
	}
	var encs []*Encoding
	for _, name := range Names {
		enc, err := Get(name)
		if err != nil {
			f.Fatal(err)
		}
		encs = append(encs, enc)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, enc := range encs {
			fuzzPieces(t, enc, s)
		}
	})
}

func fuzzPieces(t *testing.T, enc *Encoding, s string) {
	{
		var b strings.Builder
		n := 0
		enc.Pieces(s, func(p string) bool {
			if p == "" {
				t.Fatalf("empty piece in %q", s)
			}
			if utf8.ValidString(s) && !utf8.ValidString(p) {
				t.Fatalf("piece %q splits a rune of %q", p, s)
			}
			b.WriteString(p)
			n += enc.CountPiece(p)
			return true
		})
		if b.String() != s {
			t.Fatalf("pieces do not reassemble %q", s)
		}
		if c := enc.Count(s); c != n || (len(s) > 0 && c == 0) || c > len(s) {
			t.Fatalf("%s: Count(%q) = %d, pieces sum %d", enc.Name(), s, c, n)
		}
	}
}

func BenchmarkCount(b *testing.B) {
	for _, name := range Names {
		b.Run(name, func(b *testing.B) { benchCount(b, name) })
	}
}

func benchCount(b *testing.B, name string) {
	enc, g := loadGoldenFor(b, name)
	var text strings.Builder
	for _, f := range g.Files {
		data, _ := os.ReadFile(filepath.Join("..", "..", "scripts", "testdata", "corpus", filepath.FromSlash(f.Name)))
		text.Write(data)
	}
	s := text.String()
	b.SetBytes(int64(len(s)))
	b.ResetTimer()
	for b.Loop() {
		enc.Count(s)
	}
}
