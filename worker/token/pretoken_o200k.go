package token

import (
	"unicode"
	"unicode/utf8"
)

// The o200k_base pre-tokenizer (GPT-4o family), written out by hand like
// cl100k_base's. The reference pattern (tiktoken, o200k_base) is:
//
//	[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|
//	[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|
//	\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+
//
// Unlike cl100k_base, words split where lower case turns upper ("helloWorld"
// is "hello" + "World"; "HTTPServer" stays one piece), contractions only
// follow a word, and "/" joins a punctuation run's trailing newlines.
// lowerWord and upperWord follow the regex's backtracking step by step.

// upperish is [\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]; lowerish is
// [\p{Ll}\p{Lm}\p{Lo}\p{M}]; both is their overlap (Lm, Lo, M).
func upperish(r rune) bool {
	if r < utf8.RuneSelf {
		return r >= 'A' && r <= 'Z'
	}
	return unicode.In(r, unicode.Lu, unicode.Lt, unicode.Lm, unicode.Lo, unicode.M)
}

func lowerish(r rune) bool {
	if r < utf8.RuneSelf {
		return r >= 'a' && r <= 'z'
	}
	return unicode.In(r, unicode.Ll, unicode.Lm, unicode.Lo, unicode.M)
}

func isLower(r rune) bool {
	if r < utf8.RuneSelf {
		return r >= 'a' && r <= 'z'
	}
	return unicode.Is(unicode.Ll, r)
}

func both(r rune) bool {
	return r >= utf8.RuneSelf && unicode.In(r, unicode.Lm, unicode.Lo, unicode.M)
}

// withContraction extends a word ending at end by an optional contraction.
func withContraction(s string, end int) int {
	if end < len(s) && s[end] == '\'' {
		if j := contraction(s, end); j > 0 {
			return j
		}
	}
	return end
}

// lowerWord matches upperish* lowerish+ contraction? at s[j:], as the
// backtracking regex does: the upper-ish run is taken whole if a lower-case
// letter follows it; else it gives back up to its last rune that is also
// lower-ish (Lm, Lo or a mark), which then ends the match. -1: no match.
func lowerWord(s string, j int) int {
	k, lastBoth := j, -1
	for k < len(s) {
		r, w := decode(s, k)
		if !upperish(r) {
			break
		}
		k += w
		if both(r) {
			lastBoth = k
		}
	}
	if r, w := decode(s, k); k < len(s) && isLower(r) {
		end := k + w
		for end < len(s) {
			r2, w2 := decode(s, end)
			if !lowerish(r2) {
				break
			}
			end += w2
		}
		return withContraction(s, end)
	}
	if lastBoth > 0 {
		return withContraction(s, lastBoth)
	}
	return -1
}

// upperWord matches upperish+ lowerish* contraction? at s[j:]; -1: no match.
func upperWord(s string, j int) int {
	k := j
	for k < len(s) {
		r, w := decode(s, k)
		if !upperish(r) {
			break
		}
		k += w
	}
	if k == j {
		return -1
	}
	for k < len(s) {
		r, w := decode(s, k)
		if !lowerish(r) {
			break
		}
		k += w
	}
	return withContraction(s, k)
}

// nextPieceO200k returns the end of the o200k_base pre-token that starts at
// s[i]; i < len(s).
func nextPieceO200k(s string, i int) int {
	r, w := decode(s, i)
	prefix := !isLetter(r) && !isNumber(r) && !isNewline(r)
	// Each word alternative is tried with the optional prefix rune, then
	// without it, before the next alternative.
	for _, word := range [...]func(string, int) int{lowerWord, upperWord} {
		if prefix && i+w < len(s) {
			if j := word(s, i+w); j > 0 {
				return j
			}
		}
		if j := word(s, i); j > 0 {
			return j
		}
	}
	if isNumber(r) {
		return numberRun(s, i, w)
	}
	if j := punctRun(s, i, r, true); j > 0 {
		return j
	}
	return spaceRun(s, i)
}
