package token

import (
	"unicode"
	"unicode/utf8"
)

// The cl100k_base pre-tokenizer, written out by hand instead of run through a
// backtracking regex engine. The reference pattern (tiktoken, cl100k_base) is:
//
//	(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
//	 ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
//
// Alternatives are tried in order at each position, exactly as the regex does;
// every branch below names the alternative it implements. Go's unicode tables
// give the same classes as the Rust regex crate: \p{L} is unicode.IsLetter,
// \p{N} is unicode.IsNumber and \s is the White_Space property (unicode.IsSpace).

// decode returns the rune at s[i:] and its width; invalid UTF-8 decodes as
// utf8.RuneError of width 1, which is neither letter, number nor space.
func decode(s string, i int) (rune, int) {
	if i >= len(s) {
		return -1, 0
	}
	c := s[i]
	if c < utf8.RuneSelf {
		return rune(c), 1
	}
	return utf8.DecodeRuneInString(s[i:])
}

func isLetter(r rune) bool {
	if r < utf8.RuneSelf {
		return (r|0x20) >= 'a' && (r|0x20) <= 'z'
	}
	return unicode.IsLetter(r)
}

func isNumber(r rune) bool {
	if r < utf8.RuneSelf {
		return r >= '0' && r <= '9'
	}
	return unicode.IsNumber(r)
}

func isSpace(r rune) bool {
	if r < utf8.RuneSelf {
		return r == ' ' || (r >= '\t' && r <= '\r')
	}
	return r >= 0 && unicode.IsSpace(r)
}

func isNewline(r rune) bool { return r == '\r' || r == '\n' }

// foldEq reports whether r equals the lower-case ASCII letter want under
// Unicode simple case folding (the regex's (?i)); only 's' has a non-ASCII
// fold partner among the contraction letters (U+017F LATIN SMALL LETTER LONG S).
func foldEq(r rune, want byte) bool {
	if r < utf8.RuneSelf {
		return byte(r|0x20) == want && isLetter(r)
	}
	return want == 's' && r == 0x17F
}

// contraction matches (?i:'s|'t|'re|'ve|'m|'ll|'d) at s[i] (which is '\”)
// and returns the end, or -1.
func contraction(s string, i int) int {
	r1, w1 := decode(s, i+1)
	if w1 == 0 {
		return -1
	}
	j := i + 1 + w1
	switch {
	case foldEq(r1, 's'), foldEq(r1, 't'), foldEq(r1, 'm'), foldEq(r1, 'd'):
		return j
	}
	r2, w2 := decode(s, j)
	if w2 == 0 {
		return -1
	}
	switch {
	case foldEq(r1, 'r') && foldEq(r2, 'e'),
		foldEq(r1, 'v') && foldEq(r2, 'e'),
		foldEq(r1, 'l') && foldEq(r2, 'l'):
		return j + w2
	}
	return -1
}

// nextPiece returns the end of the pre-token that starts at s[i]; i < len(s).
func nextPiece(s string, i int) int {
	r, w := decode(s, i)
	// (?i:'s|'t|'re|'ve|'m|'ll|'d)
	if r == '\'' {
		if j := contraction(s, i); j > 0 {
			return j
		}
	}
	// [^\r\n\p{L}\p{N}]?\p{L}+
	start := i
	if !isLetter(r) && !isNumber(r) && !isNewline(r) {
		if r2, _ := decode(s, i+w); isLetter(r2) {
			start = i + w
			r = r2
		}
	}
	if isLetter(r) {
		j := start
		for j < len(s) {
			r2, w2 := decode(s, j)
			if !isLetter(r2) {
				break
			}
			j += w2
		}
		return j
	}
	r, w = decode(s, i)
	if isNumber(r) {
		return numberRun(s, i, w)
	}
	if j := punctRun(s, i, r, false); j > 0 {
		return j
	}
	return spaceRun(s, i)
}

// numberRun matches \p{N}{1,3} at s[i], a number of width w (both
// encodings).
func numberRun(s string, i, w int) int {
	j := i + w
	for n := 1; n < 3 && j < len(s); n++ {
		r2, w2 := decode(s, j)
		if !isNumber(r2) {
			break
		}
		j += w2
	}
	return j
}

// punctRun matches ' ?[^\s\p{L}\p{N}]+[\r\n]*' at s[i] (r is its rune),
// with '/' among the trailing runes for o200k_base ('[\r\n/]*'); -1 when
// it does not match.
func punctRun(s string, i int, r rune, slash bool) int {
	j := i
	if r == ' ' {
		j = i + 1
	}
	if r2, _ := decode(s, j); j >= len(s) || isSpace(r2) || isLetter(r2) || isNumber(r2) {
		return -1
	}
	for j < len(s) {
		r3, w3 := decode(s, j)
		if isSpace(r3) || isLetter(r3) || isNumber(r3) {
			break
		}
		j += w3
	}
	for j < len(s) && (s[j] == '\r' || s[j] == '\n' || (slash && s[j] == '/')) {
		j++
	}
	return j
}

// spaceRun matches the whitespace alternatives, shared by both encodings:
// \s*[\r\n]+|\s+(?!\S)|\s+ at s[i], a space.
func spaceRun(s string, i int) int {
	end, lastNL := i, -1
	for end < len(s) {
		r3, w3 := decode(s, end)
		if !isSpace(r3) {
			break
		}
		end += w3
		if isNewline(r3) {
			lastNL = end
		}
	}
	// \s*[\r\n]+ : greedy, so it ends after the last newline of the run.
	if lastNL > 0 {
		return lastNL
	}
	// \s+(?!\S) : the whole run at end of text, else all but its last rune.
	if end == len(s) {
		return end
	}
	_, lw := utf8.DecodeLastRuneInString(s[i:end])
	if end-lw > i {
		return end - lw
	}
	// \s+ : a single space before a non-space.
	return end
}

// Pieces calls yield with every cl100k_base pre-token of s in order,
// stopping early when yield returns false. The pieces concatenate to s.
func Pieces(s string, yield func(piece string) bool) { pieces(s, nextPiece, yield) }

func pieces(s string, next func(string, int) int, yield func(piece string) bool) {
	for i := 0; i < len(s); {
		j := next(s, i)
		if !yield(s[i:j]) {
			return
		}
		i = j
	}
}
