package plan

import (
	"bytes"
	"math/big"
	"slices"
	"sort"
	"strings"
)

// A big bucket is listed in lanes: ranges of its keys listed at once, each
// a run of pages like a small bucket's. A lane whose page came back full
// may split in two, both going on from the next page:
//
//   - the lane that runs to the end of the bucket (Through "") splits off a
//     bounded run of the keys just after its page, sized by extrapolating
//     the page's own span (TailPages × 2^depth pages: runs grow as the
//     bucket proves big), and keeps the rest;
//   - a bounded lane splits at the middle of what is left of its range,
//     while that is estimated at 2 × MinLanePages pages or more.
//
// Keys are compared as S3 sorts them (bytes); split points are written in
// printable ASCII so they are valid UTF-8 and XML, and placed by arithmetic
// on the page's keys (keyspace, below). A lane splits only while the job
// has fewer than MaxLiveLanes lanes at work (the record's count, a second
// old at most, so a soft bound): when one ends, the next full page of
// another splits, so the listing stays that wide to its end instead of
// spending a fixed budget of splits on its first ranges. MaxLaneDepth
// bounds a lane's name, and a job with max_files is listed as one lane (its
// cap counts pages in order).
const (
	MaxLiveLanes = 64
	MaxLaneDepth = 48
	TailPages    = 64
	MinLanePages = 16
)

// Alphabets a key position may take, in byte order: a position's is the
// narrowest holding every character the page's keys have there (digits in
// numbered keys, hex in hashes), so arithmetic on keys follows how they
// are really spread instead of counting the gaps between digits and
// letters; a position with one character that is not a letter or digit
// ("/", "-", ".") is structure and stays as it is.
var alphabets = []string{
	"0123456789",
	"0123456789abcdef",
	"0123456789ABCDEF",
	"abcdefghijklmnopqrstuvwxyz",
	"ABCDEFGHIJKLMNOPQRSTUVWXYZ",
	"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
	printable,
}

var printable = func() string {
	b := make([]byte, 0, 0x7f-0x20)
	for c := byte(0x20); c < 0x7f; c++ {
		b = append(b, c)
	}
	return string(b)
}()

// keyspace numbers keys position by position, each position in its own
// alphabet (mixed radix); digit 0 at a position is "the key has ended".
type keyspace []string

// newKeyspace is the keyspace of keys (a page's, and the lane's bound).
func newKeyspace(keys ...string) keyspace {
	n := 0
	for _, k := range keys {
		n = max(n, len(k))
	}
	ks := make(keyspace, n)
	for i := range ks {
		var seen [256]bool
		distinct, last := 0, byte(0)
		for _, k := range keys {
			if i < len(k) && !seen[k[i]] {
				seen[k[i]], distinct, last = true, distinct+1, k[i]
			}
		}
		if distinct == 1 && last >= 0x20 && last < 0x7f && !strings.ContainsRune(alphabets[5], rune(last)) {
			ks[i] = string(last) // structure
			continue
		}
		ks[i] = printable
		for _, a := range alphabets {
			if holds(a, &seen) {
				ks[i] = a
				break
			}
		}
	}
	return ks
}

// holds reports whether alphabet has every character seen.
func holds(alphabet string, seen *[256]bool) bool {
	for c, ok := range seen {
		if ok && !strings.ContainsRune(alphabet, rune(c)) {
			return false
		}
	}
	return true
}

// number is key in ks (a character outside a position's alphabet counts as
// the nearest one in it).
func (ks keyspace) number(key string) *big.Int {
	v := new(big.Int)
	for i, a := range ks {
		d := 0
		if i < len(key) {
			d = sort.Search(len(a), func(j int) bool { return a[j] >= key[i] }) + 1
			d = min(d, len(a))
		}
		v.Mul(v, big.NewInt(int64(len(a)+1))).Add(v, big.NewInt(int64(d)))
	}
	return v
}

// limit is the first number past ks's keys.
func (ks keyspace) limit() *big.Int {
	v := big.NewInt(1)
	for _, a := range ks {
		v.Mul(v, big.NewInt(int64(len(a)+1)))
	}
	return v
}

// key is the key of number v in ks: digits from the end, the key cut at its
// first "ended" digit.
func (ks keyspace) key(v *big.Int) string {
	b := make([]byte, len(ks))
	q, r := new(big.Int).Set(v), new(big.Int)
	for i := len(ks) - 1; i >= 0; i-- {
		q.QuoRem(q, big.NewInt(int64(len(ks[i])+1)), r)
		if d := int(r.Int64()); d > 0 {
			b[i] = ks[i][d-1]
		}
	}
	if end := bytes.IndexByte(b, 0); end >= 0 {
		b = b[:end]
	}
	return string(b)
}

// splitPoint returns where a lane covering (last, through] — through ""
// for the end of the bucket — splits, given its page's keys (in order) and
// its depth: keys up to the point go to one half, keys after it to the
// other. ok is false when the lane should not split (too deep, too little
// left, or no key strictly between).
func splitPoint(page []string, through string, depth int) (point string, ok bool) {
	if depth >= MaxLaneDepth || len(page) < 2 {
		return "", false
	}
	first, last := page[0], page[len(page)-1]
	ks := newKeyspace(append(slices.Clone(page), through)...)
	lo := ks.number(last)
	span := new(big.Int).Sub(lo, ks.number(first))
	if span.Sign() <= 0 {
		return "", false
	}
	var p *big.Int
	if through == "" {
		p = new(big.Int).Mul(span, big.NewInt(int64(TailPages)<<depth))
		if p.Add(p, lo).Cmp(ks.limit()) >= 0 {
			return "", false
		}
	} else {
		left := new(big.Int).Sub(ks.number(through), lo)
		if left.Cmp(new(big.Int).Mul(span, big.NewInt(2*MinLanePages))) < 0 {
			return "", false
		}
		p = left.Rsh(left, 1)
		p.Add(p, lo)
	}
	point = ks.key(p)
	if point <= last || through != "" && point >= through {
		return "", false
	}
	return point, true
}
