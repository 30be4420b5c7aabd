package chunk

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/stevedore-dev/stevedore/worker/token"
)

func setup(t testing.TB, max int) (*Splitter, *token.Encoding) {
	enc, err := token.Get(token.Cl100kBase)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(enc, max)
	if err != nil {
		t.Fatal(err)
	}
	return s, enc
}

// check asserts the invariants every split must keep.
func check(t *testing.T, s *Splitter, enc *token.Encoding, text string) []Chunk {
	t.Helper()
	chunks := s.Split(text)
	var b strings.Builder
	for i, c := range chunks {
		if c.Offset != b.Len() {
			t.Fatalf("chunk %d offset %d, want %d", i, c.Offset, b.Len())
		}
		b.WriteString(c.Text)
		if got := enc.Count(c.Text); got != c.Tokens {
			t.Fatalf("chunk %d %q: Tokens = %d, tokenizer says %d", i, c.Text, c.Tokens, got)
		}
		if c.Tokens > s.max {
			t.Fatalf("chunk %d has %d tokens > max %d", i, c.Tokens, s.max)
		}
		if c.Text == "" {
			t.Fatalf("empty chunk %d", i)
		}
	}
	if b.String() != text {
		t.Fatal("chunks do not reassemble the input")
	}
	if total := enc.Count(text); !hasLongPiece(s, enc, text) && sum(chunks) != total {
		t.Fatalf("sum of chunk tokens %d != count of text %d", sum(chunks), total)
	}
	return chunks
}

// hasLongPiece reports whether text has a pre-token that the splitter cuts
// into parts (see LongPieceBytes), or one so near the limit that the
// whitespace before it may have to be cut off where no cut is safe: the
// chunks' sum then need not equal the whole text's count.
func hasLongPiece(s *Splitter, enc *token.Encoding, text string) bool {
	long := false
	enc.Pieces(text, func(p string) bool {
		long = len(p) > LongPieceBytes || enc.CountPiece(p) > s.max-3
		return !long
	})
	return long
}

func sum(cs []Chunk) int {
	n := 0
	for _, c := range cs {
		n += c.Tokens
	}
	return n
}

func TestCorpus(t *testing.T) {
	s, enc := setup(t, 256)
	err := filepath.WalkDir("../../scripts/testdata/corpus", func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		check(t, s, enc, string(data))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestPrefersParagraphs(t *testing.T) {
	s, enc := setup(t, 40)
	para := strings.Repeat("word ", 15) + "end.\n\n"
	chunks := check(t, s, enc, strings.Repeat(para, 6))
	for i, c := range chunks[:len(chunks)-1] {
		if !strings.HasSuffix(c.Text, "\n\n") {
			t.Errorf("chunk %d does not end at a paragraph: %q", i, c.Text)
		}
	}
}

func TestDeterministic(t *testing.T) {
	s, _ := setup(t, 64)
	text := strings.Repeat("The quick brown fox. Jumps over\nthe lazy dog!  ", 200)
	a, b := s.Split(text), s.Split(text)
	if len(a) != len(b) {
		t.Fatal("not deterministic")
	}
	for i := range a {
		if a[i] != b[i] {
			t.Fatal("not deterministic")
		}
	}
}

func TestEdgeCases(t *testing.T) {
	s, enc := setup(t, 16)
	for _, text := range []string{"", " ", "a", strings.Repeat(" ", 500), strings.Repeat("\n", 100), strings.Repeat("x", 10000),
		strings.Repeat("a  ", 100), strings.Repeat("\t \n", 300), "x \n\n  y" + strings.Repeat(" z", 50)} {
		check(t, s, enc, text)
	}
}

func FuzzSplit(f *testing.F) {
	for _, s := range []string{"a\n  \nb", "Hello. World!\n\nNew para", strings.Repeat("ab ", 40), "  \n \n\t x"} {
		f.Add(s, uint8(10))
	}
	f.Fuzz(func(t *testing.T, text string, max uint8) {
		s, enc := setup(t, 8+int(max%64))
		check(t, s, enc, text)
	})
}

// TestStreamEqualsSplit feeds texts in parts of many sizes and requires the
// exact chunks (text, offset, tokens) that Split returns for the whole text.
func TestStreamEqualsSplit(t *testing.T) {
	enc, err := token.Get(token.Cl100kBase)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := New(enc, 64)
	texts := map[string]string{}
	files, _ := filepath.Glob("../../scripts/testdata/corpus/*/*")
	more, _ := filepath.Glob("../../scripts/testdata/corpus/*/*/*")
	for _, f := range append(files, more...) {
		if b, err := os.ReadFile(f); err == nil && utf8.Valid(b) {
			texts[f] = string(b)
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	words := []string{"the", " ", "  ", "\n", "\n\n", ".", "Ünïcode", "😀", "don't", "123", "\t", "x", "END!", "  \n"}
	for i := 0; i < 30; i++ {
		var b strings.Builder
		for j := 0; j < 3000; j++ {
			b.WriteString(words[rng.IntN(len(words))])
		}
		texts[fmt.Sprint("random", i)] = b.String()
	}
	if len(texts) < 40 {
		t.Fatalf("only %d texts", len(texts))
	}
	for name, text := range texts {
		want := s.Split(text)
		for _, part := range []int{1 << 10, 4 << 10, 1 << 16} {
			var got []Chunk
			st := s.Stream(func(c Chunk) error { got = append(got, c); return nil })
			for off := 0; off < len(text); {
				end := min(off+part, len(text))
				for end < len(text) && !utf8.RuneStart(text[end]) {
					end++
				}
				if err := st.Write(text[off:end]); err != nil {
					t.Fatal(err)
				}
				off = end
			}
			if err := st.Close(); err != nil {
				t.Fatal(err)
			}
			if len(got) != len(want) {
				t.Fatalf("%s, parts of %d: %d chunks, want %d", name, part, len(got), len(want))
			}
			for i := range want {
				if got[i] != want[i] {
					t.Fatalf("%s, parts of %d: chunk %d = %+v, want %+v", name, part, i, got[i], want[i])
				}
			}
		}
	}
}

// BenchmarkSplit splits the corpus's text files (concatenated) into chunks
// of 512 tokens; compare with BenchmarkCount in worker/token (the
// tokenizer alone on the same text).
func BenchmarkSplit(b *testing.B) {
	s, _ := setup(b, 512)
	var text strings.Builder
	files, _ := filepath.Glob("../../scripts/testdata/corpus/*/*")
	more, _ := filepath.Glob("../../scripts/testdata/corpus/*/*/*")
	for _, f := range append(files, more...) {
		if data, err := os.ReadFile(f); err == nil && utf8.Valid(data) {
			text.Write(data)
		}
	}
	in := text.String()
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		s.Split(in)
	}
}

// The ASCII fast paths of the piece tests answer as unicode's tables do.
func TestPieceTestsMatchUnicode(t *testing.T) {
	ref := map[string]func(string) bool{
		"endsSentence": func(p string) bool {
			t := strings.TrimRightFunc(p, unicode.IsSpace)
			if t == "" {
				return false
			}
			r, _ := utf8.DecodeLastRuneInString(t)
			return r == '.' || r == '!' || r == '?' || r == '。'
		},
		"startsSpace": func(p string) bool { r, _ := utf8.DecodeRuneInString(p); return unicode.IsSpace(r) },
		"endsSpace":   func(p string) bool { r, _ := utf8.DecodeLastRuneInString(p); return unicode.IsSpace(r) },
		"isAllSpace":  func(p string) bool { return strings.TrimLeftFunc(p, unicode.IsSpace) == "" },
	}
	got := map[string]func(string) bool{"endsSentence": endsSentence, "startsSpace": startsSpace, "endsSpace": endsSpace, "isAllSpace": isAllSpace}
	pieces := []string{" ", "  ", "\n\n", " \t\r\n\v\f", "word", " word", "end.", " end. ", "why?", "so!  ", "。", "終わり。 ", "\u00a0", " \u00a0",
		"a\u0085", "\u0085", "\u2003x", "x\u2003", "\u3000", ".\u3000", "é", " é.", "\xff", ". \xff", "\xff ", "?\n", "1.5", "...", "\u00a0."}
	for name, want := range ref {
		for _, p := range pieces {
			if p == "" && name == "isAllSpace" {
				continue
			}
			if g, w := got[name](p), want(p); g != w {
				t.Errorf("%s(%q) = %v, unicode says %v", name, p, g, w)
			}
		}
	}
}

// TestLongRunIsCutWithinTheLimit: a 4 MiB run without whitespace, streamed
// in 1 MiB parts (the worker's are smaller), becomes chunks within the token limit
// and the message cap, in bounded memory (the BPE never sees the whole run;
// it took 453 MiB and one 4,190,605-byte chunk before).
func TestLongRunIsCutWithinTheLimit(t *testing.T) {
	s, enc := setup(t, 512)
	run := strings.Repeat("abcdefghij", 4<<20/10)
	var m runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m)
	base, peak := m.HeapAlloc, uint64(0)
	var got []Chunk
	st := s.Stream(func(c Chunk) error {
		if len(got)%64 == 0 {
			runtime.ReadMemStats(&m)
			peak = max(peak, m.HeapAlloc-min(base, m.HeapAlloc))
		}
		got = append(got, c)
		return nil
	})
	for off := 0; off < len(run); off += 1 << 20 {
		if err := st.Write(run[off:min(off+1<<20, len(run))]); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	longest := 0
	for i, c := range got {
		if c.Tokens > 512 || len(c.Text) > 512 {
			t.Fatalf("chunk %d: %d tokens, %d bytes", i, c.Tokens, len(c.Text))
		}
		if i%97 == 0 && enc.Count(c.Text) != c.Tokens {
			t.Fatalf("chunk %d: count %d, tokenizer says %d", i, c.Tokens, enc.Count(c.Text))
		}
		longest = max(longest, len(c.Text))
		b.WriteString(c.Text)
	}
	if b.String() != run {
		t.Fatal("chunks do not reassemble the run")
	}
	t.Logf("4 MiB run: %d chunks, longest %d bytes, peak heap above the start %d MiB", len(got), longest, peak>>20)
	if peak > 64<<20 {
		t.Fatalf("splitting a 4 MiB run held %d MiB", peak>>20)
	}
}
