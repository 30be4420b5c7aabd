// Package chunk splits text into chunks of at most MaxTokens tokens, cutting
// only between tokenizer pre-tokens so that a chunk's token count is the sum
// of its pieces' counts and equals the tokenizer's count of the chunk's text.
// Cuts prefer, in order, a paragraph break, the end of a sentence, a line
// break, and any piece boundary, among cuts in the second half of the chunk.
// Boundaries depend only on the input, so the same text always yields the
// same chunks (and so the same chunk IDs).
package chunk

import (
	"cmp"
	"fmt"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"github.com/stevedore-dev/stevedore/worker/token"
)

// DefaultMaxTokens is the chunk size used when Config.MaxTokens is zero.
const DefaultMaxTokens = 512

// Chunk is one piece of text.
type Chunk struct {
	Offset int    // byte offset of Text in the input
	Text   string // a substring of the input
	Tokens int    // exact token count of Text
}

// Splitter cuts text into chunks. It is safe for concurrent use.
type Splitter struct {
	enc *token.Encoding
	max int
}

// New returns a Splitter producing chunks of at most maxTokens tokens
// (DefaultMaxTokens when 0). No chunk exceeds the limit: a pre-token longer
// than the limit (a run of thousands of letters without a space) is cut into
// chunks of its own (see LongPieceBytes).
func New(enc *token.Encoding, maxTokens int) (*Splitter, error) {
	if maxTokens == 0 {
		maxTokens = DefaultMaxTokens
	}
	if maxTokens < 8 {
		return nil, fmt.Errorf("chunk: max tokens %d is below 8", maxTokens)
	}
	return &Splitter{enc: enc, max: maxTokens}, nil
}

// Encoding is the name of the tokenizer the chunks are counted with.
func (s *Splitter) Encoding() string { return s.enc.Name() }

// boundary levels, best last.
const (
	levelNone = iota
	levelLine
	levelSentence
	levelParagraph
	levelSection // the end of a document section (a heading, a page, a slide follows)
)

type cut struct {
	end    int // byte offset in the input after the piece
	tokens int // tokens from the chunk start up to end
	level  int
	safe   bool // cutting here leaves the pre-tokenization unchanged
}

// cutsPool holds the candidate-cut slices of split: one chunk's worth of
// pieces (≈ 16 KiB at 512 tokens), which were a tenth of a small object's
// allocations when made per call.
var cutsPool = sync.Pool{New: func() any { c := make([]cut, 0, 256); return &c }}

// Split returns the chunks of text in order; they concatenate to text.
func (s *Splitter) Split(text string) []Chunk { return s.split(text, nil) }

// split is Split preferring to cut at the section ends given (offsets in
// text, ascending) over any other boundary.
func (s *Splitter) split(text string, sections []int) []Chunk {
	cp := cutsPool.Get().(*[]cut)
	sp := &splitting{s: s, text: text, sections: sections, cuts: (*cp)[:0]}
	defer func() { *cp = sp.cuts[:0]; cutsPool.Put(cp) }()
	s.enc.Pieces(text, sp.piece)
	if len(sp.cuts) > 0 {
		last := sp.cuts[len(sp.cuts)-1]
		sp.out = append(sp.out, Chunk{Offset: sp.start, Text: text[sp.start:last.end], Tokens: last.tokens})
	}
	return sp.out
}

// splitting is one split under way: the chunks so far, and the current
// chunk's start, tokens and candidate cuts (after each of its pieces).
type splitting struct {
	s             *Splitter
	text          string
	sections      []int // section ends not yet passed
	out           []Chunk
	start, tokens int
	cuts          []cut
	prevEndsSpace bool
	prevPiece     string
}

// piece takes the next pre-token p.
func (sp *splitting) piece(p string) bool {
	s := sp.s
	pos := sp.start
	if len(sp.cuts) > 0 {
		pos = sp.cuts[len(sp.cuts)-1].end
	}
	long := len(p) > LongPieceBytes
	n := 0
	if !long {
		n = s.enc.CountPiece(p)
		long = n > s.max
	}
	if long {
		sp.out = s.cutLong(sp.out, sp.text, sp.start, pos, sp.cuts, p)
		pos += len(p)
		sp.start, sp.tokens, sp.cuts = pos, 0, sp.cuts[:0]
		for len(sp.sections) > 0 && sp.sections[0] <= pos {
			sp.sections = sp.sections[1:]
		}
		sp.prevEndsSpace, sp.prevPiece = endsSpace(p), p
		return true
	}
	// A sentence ends after a piece ending in . ! ? when the next piece starts with a space.
	if len(sp.cuts) > 0 && startsSpace(p) && endsSentence(sp.prevPiece) {
		if c := &sp.cuts[len(sp.cuts)-1]; c.level < levelSentence {
			c.level = levelSentence
		}
	}
	// Cut until the piece fits: one cut at the best boundary can leave
	// more than the piece has room for (found by FuzzSplit).
	for sp.tokens+n > s.max && len(sp.cuts) > 0 {
		var ok bool
		if sp.out, sp.start, sp.cuts, sp.tokens, ok = s.cutOne(sp.out, sp.text, sp.start, sp.cuts, sp.tokens); !ok {
			break
		}
	}
	sp.tokens += n
	lvl := level(p)
	for len(sp.sections) > 0 && sp.sections[0] < pos+len(p) {
		sp.sections = sp.sections[1:]
	}
	if len(sp.sections) > 0 && sp.sections[0] == pos+len(p) {
		lvl = levelSection
	}
	sp.cuts = append(sp.cuts, cut{end: pos + len(p), tokens: sp.tokens, level: lvl, safe: !(isAllSpace(p) && sp.prevEndsSpace)})
	sp.prevEndsSpace, sp.prevPiece = endsSpace(p), p
	return true
}

// LongPieceBytes is the longest pre-token counted whole. A longer one (or
// one of more than the chunk's max tokens) is cut into parts of at most max
// bytes, each its own chunk: the BPE's memory and time grow with a piece's
// length, and no chunk may exceed the token limit or a message's size. Each
// such chunk's count is exact for its text; the sum of an object's chunk
// counts then differs from the count of its whole text only by how the BPE
// would have merged across the cuts inside that piece.
const LongPieceBytes = 4 << 10

// parts cuts a long piece into runs of at most max bytes, at rune starts.
func parts(p string, max int) func(func(string) bool) {
	return func(yield func(string) bool) {
		for p != "" {
			end := min(max, len(p))
			for end < len(p) && end > 1 && !utf8.RuneStart(p[end]) {
				end--
			}
			if !yield(p[:end]) {
				return
			}
			p = p[end:]
		}
	}
}

// cutOne ends the current chunk (text from start, candidate cuts cuts,
// tokens in all) at its best cut and returns what is left of it; ok is false
// when no cut can be made within the limit (the chunk then grows past it).
func (s *Splitter) cutOne(out []Chunk, text string, start int, cuts []cut, tokens int) ([]Chunk, int, []cut, int, bool) {
	i, count := s.best(cuts), 0
	if i < 0 {
		// No safe cut: cut at the latest one anyway and count the chunk
		// again. Only its trailing whitespace pre-tokenizes differently
		// there; the pieces after the cut keep theirs.
		i = len(cuts) - 1
		if count = s.enc.Count(text[start:cuts[i].end]); count > s.max {
			return out, start, cuts, tokens, false
		}
	}
	c := cuts[i]
	out = append(out, Chunk{Offset: start, Text: text[start:c.end], Tokens: cmp.Or(count, c.tokens)})
	cuts = cuts[:copy(cuts, cuts[i+1:])] // the rest, shifted in place
	for j := range cuts {
		cuts[j].tokens -= c.tokens
	}
	return out, c.end, cuts, tokens - c.tokens, true
}

// cutLong appends the chunks of a pre-token p (at pos) too long for any
// chunk (megabytes of letters without a space): what precedes it since
// start is a chunk, and p is cut into parts of at most max bytes (so at
// most max tokens), each a chunk counted on its own, without running the
// BPE over the whole piece.
func (s *Splitter) cutLong(out []Chunk, text string, start, pos int, cuts []cut, p string) []Chunk {
	if pos > start {
		out = append(out, Chunk{Offset: start, Text: text[start:pos], Tokens: s.countBefore(cuts, text[start:pos])})
	}
	for part := range parts(p, s.max) {
		out = append(out, Chunk{Offset: pos, Text: part, Tokens: s.enc.Count(part)})
		pos += len(part)
	}
	return out
}

// countBefore is the token count of the chunk text that ends at the latest
// cut: the pieces' sum when that cut is safe, else the text counted again.
func (s *Splitter) countBefore(cuts []cut, text string) int {
	if c := cuts[len(cuts)-1]; c.safe {
		return c.tokens
	}
	return s.enc.Count(text)
}

// best picks the cut to end a full chunk at: the best boundary level among
// safe cuts in the second half of the chunk, the latest on ties; else the
// latest safe cut; -1 if none is safe (the chunk then grows past the limit).
func (s *Splitter) best(cuts []cut) int {
	bestI, bestLevel := -1, -1
	for i, c := range cuts {
		if !c.safe || c.tokens < s.max/2 {
			continue
		}
		if c.level >= bestLevel {
			bestI, bestLevel = i, c.level
		}
	}
	if bestI >= 0 {
		return bestI
	}
	return latestSafe(cuts)
}

// latestSafe is the index of the latest safe cut, or -1.
func latestSafe(cuts []cut) int {
	for i := len(cuts) - 1; i >= 0; i-- {
		if cuts[i].safe {
			return i
		}
	}
	return -1
}

func level(p string) int {
	if last := p[len(p)-1]; last < utf8.RuneSelf && !asciiSpace(last) {
		return levelNone // the common case: no trailing whitespace
	}
	trail := p[len(strings.TrimRightFunc(p, unicode.IsSpace)):]
	switch strings.Count(trail, "\n") {
	case 0:
		return levelNone
	case 1:
		return levelLine
	default:
		return levelParagraph
	}
}

// The piece tests below run for every piece of every text (a tenth of the
// splitter's time): ASCII, nearly every piece, is decided byte by byte, and
// only other text goes through unicode's tables.

func endsSentence(p string) bool {
	for i := len(p) - 1; i >= 0; i-- {
		c := p[i]
		if c >= utf8.RuneSelf {
			t := strings.TrimRightFunc(p[:i+1], unicode.IsSpace)
			if t == "" {
				return false
			}
			r, _ := utf8.DecodeLastRuneInString(t)
			return r == '.' || r == '!' || r == '?' || r == '。'
		}
		if !asciiSpace(c) {
			return c == '.' || c == '!' || c == '?'
		}
	}
	return false
}

func startsSpace(p string) bool {
	if p != "" && p[0] < utf8.RuneSelf {
		return asciiSpace(p[0])
	}
	r, _ := utf8.DecodeRuneInString(p)
	return unicode.IsSpace(r)
}

func endsSpace(p string) bool {
	if p != "" && p[len(p)-1] < utf8.RuneSelf {
		return asciiSpace(p[len(p)-1])
	}
	r, _ := utf8.DecodeLastRuneInString(p)
	return unicode.IsSpace(r)
}

func isAllSpace(p string) bool {
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c >= utf8.RuneSelf {
			return strings.TrimLeftFunc(p[i:], unicode.IsSpace) == ""
		}
		if !asciiSpace(c) {
			return false
		}
	}
	return true
}

func asciiSpace(c byte) bool { return c == ' ' || (c >= '\t' && c <= '\r') }

// MaxCarry bounds the text a Stream holds back while waiting for a cut: a
// run longer than this without a pre-token boundary (megabytes of letters
// with no space) is refused rather than buffered without bound.
const MaxCarry = 4 << 20

// ErrUnsplittable is returned by Stream.Write when MaxCarry is exceeded.
var ErrUnsplittable = fmt.Errorf("chunk: more than %d bytes without a token boundary", MaxCarry)

// Stream splits text that arrives in parts, emitting each chunk as soon as
// it is final: the same chunks, in the same order, that Split returns for
// the whole text. Memory is bounded by the part size plus one chunk.
type Stream struct {
	s        *Splitter
	emit     func(Chunk) error
	carry    string
	base     int   // offset of carry in the whole text
	sections []int // section ends in carry, as offsets in the whole text
	// last is carry as the last chunk of the latest split (its token count
	// known): Close emits it as it is instead of splitting it again.
	last      Chunk
	lastValid bool
}

// Boundary says the text written so far ends a section: cuts there are
// preferred over any other (see Split), when one falls in the second half
// of a chunk.
func (st *Stream) Boundary() {
	end := st.base + len(st.carry)
	if n := len(st.sections); n == 0 || st.sections[n-1] < end {
		st.sections = append(st.sections, end)
	}
}

// relative returns the section ends as offsets in carry.
func (st *Stream) relative() []int {
	rel := make([]int, 0, len(st.sections))
	for _, o := range st.sections {
		rel = append(rel, o-st.base)
	}
	return rel
}

// Stream returns a Stream that calls emit for every final chunk.
func (s *Splitter) Stream(emit func(Chunk) error) *Stream {
	return &Stream{s: s, emit: emit}
}

// Write adds the next part of the text. The last chunk of what has arrived
// may still grow, so it is held back until more text (or Close) decides it.
func (st *Stream) Write(part string) error {
	buf := st.carry + part
	chunks := st.s.split(buf, st.relative())
	if len(chunks) == 0 {
		return nil
	}
	for _, c := range chunks[:len(chunks)-1] {
		c.Offset += st.base
		if err := st.emit(c); err != nil {
			return err
		}
	}
	last := chunks[len(chunks)-1]
	st.base += last.Offset
	st.carry = buf[last.Offset:]
	st.last, st.lastValid = Chunk{Offset: st.base, Text: st.carry, Tokens: last.Tokens}, true
	for len(st.sections) > 0 && st.sections[0] <= st.base {
		st.sections = st.sections[1:]
	}
	if len(st.carry) > MaxCarry {
		return ErrUnsplittable
	}
	return nil
}

// Close emits what is held back. The held-back text is the last chunk of
// the latest split, and splitting it again gives that one chunk (its cuts
// were all in it, and it is within the limit), so it is emitted as it is.
func (st *Stream) Close() error {
	if st.lastValid && st.carry != "" {
		st.carry, st.lastValid = "", false
		return st.emit(st.last)
	}
	for _, c := range st.s.split(st.carry, st.relative()) {
		c.Offset += st.base
		if err := st.emit(c); err != nil {
			return err
		}
	}
	st.carry = ""
	return nil
}

// Count is the exact token count of text.
func (s *Splitter) Count(text string) int { return s.enc.Count(text) }

// Tail is the end of text made of whole pre-tokens whose counts sum to at
// most max tokens ("" when the last pre-token alone is more): what a chunk
// repeats of the one before it when chunks overlap. It never splits a
// token.
func (s *Splitter) Tail(text string, max int) string {
	type piece struct{ start, tokens int }
	var pieces []piece
	pos := 0
	s.enc.Pieces(text, func(p string) bool {
		pieces = append(pieces, piece{pos, s.enc.CountPiece(p)})
		pos += len(p)
		return true
	})
	start, sum := len(text), 0
	for i := len(pieces) - 1; i >= 0 && sum+pieces[i].tokens <= max; i-- {
		sum += pieces[i].tokens
		start = pieces[i].start
	}
	return text[start:]
}
