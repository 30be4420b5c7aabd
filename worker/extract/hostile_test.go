package extract

import (
	"bytes"
	"errors"
	"io"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stevedore-dev/stevedore/worker/extract/extracttest"
)

// Documents shaped as a hostile tenant would shape them (issue 23): each
// one ends as text or as a skip with a short reason, in bounded memory,
// never as a panic.

// peakHeap runs f and returns the largest heap in use above the start seen
// while it ran (sampled every millisecond and after f: a sample can miss a
// peak, never invent one, so a bound it holds is a bound met).
func peakHeap(f func()) uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	base := m.HeapAlloc
	var peak atomic.Uint64
	sample := func() {
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		if m.HeapAlloc > base && m.HeapAlloc-base > peak.Load() {
			peak.Store(m.HeapAlloc - base)
		}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				sample()
			}
		}
	})
	f()
	sample()
	close(done)
	wg.Wait()
	return peak.Load()
}

// drainAll reads every part of an object, keeping only counts: its text's
// size, the deepest heading path, and the skip (nil when read to the end).
func drainAll(t *testing.T, r io.Reader, key string, opts Options) (n int64, deepest int, skip *Skip) {
	t.Helper()
	x, err := opts.Open(r, key, "")
	for err == nil {
		var part string
		if part, err = x.Next(1 << 20); err == nil {
			n += int64(len(part))
			for _, s := range x.Sections() {
				deepest = max(deepest, len(s.Headings))
			}
		}
	}
	x.Close()
	if errors.As(err, &skip) {
		return n, deepest, skip
	}
	if !errors.Is(err, io.EOF) {
		t.Fatalf("a plain error (would be retried): %v", err)
	}
	return n, deepest, nil
}

// TestODTOutlineLevels: a heading of outline level 1,000,000,000 panicked
// (makeslice) in advanced mode; 10,000 headings of rising levels made
// heading paths 10,000 deep (1.1 GiB) in basic mode. Levels are clamped to
// 1–9 now.
func TestODTOutlineLevels(t *testing.T) {
	huge, deep := extracttest.HugeLevelODT(), extracttest.RisingLevelsODT(10_000)
	for _, structured := range []bool{false, true} {
		for name, doc := range map[string][]byte{"level 1e9": huge, "10,000 rising levels": deep} {
			var n int64
			var depth int
			var skip *Skip
			peak := peakHeap(func() { n, depth, skip = drainAll(t, bytes.NewReader(doc), "doc.odt", Options{Structured: structured}) })
			t.Logf("%s (%d bytes), advanced %v: %d bytes of text, heading paths ≤ %d deep, peak heap %d MiB, skip %v",
				name, len(doc), structured, n, depth, peak>>20, skip)
			if skip != nil || n == 0 {
				t.Fatalf("not indexed: %v", skip)
			}
			if depth > maxHeadingLevel {
				t.Fatalf("heading path %d deep", depth)
			}
			if peak > 128<<20 {
				t.Fatalf("peak heap %d MiB", peak>>20)
			}
		}
	}
}

// repeatReader yields s over and over, n bytes in all, without holding them.
type repeatReader struct {
	s    string
	left int64
	off  int
}

func (r *repeatReader) Read(p []byte) (int, error) {
	if r.left <= 0 {
		return 0, io.EOF
	}
	n := 0
	for n < len(p) && r.left > 0 {
		c := copy(p[n:min(len(p), n+int(r.left))], r.s[r.off:])
		r.off = (r.off + c) % len(r.s)
		n += c
		r.left -= int64(c)
	}
	return n, nil
}

// TestHTMLHugeTextNode: one 64 MiB text node took 890 MiB of heap (the
// tokenizer held the node whole, then strings.Fields over it); it is read in
// pieces now, its text unchanged. A comment over maxHTMLToken is a skip.
func TestHTMLHugeTextNode(t *testing.T) {
	const size = 64 << 20
	body := io.MultiReader(strings.NewReader("<html><body><p>"), &repeatReader{s: "lorem ipsum dolor sit amet ", left: size}, strings.NewReader("</p></body></html>"))
	var n int64
	var skip *Skip
	peak := peakHeap(func() { n, _, skip = drainAll(t, body, "big.html", Options{}) })
	t.Logf("a 64 MiB text node: %d bytes of text, peak heap %d MiB", n, peak>>20)
	if skip != nil || n < size*9/10 {
		t.Fatalf("text %d bytes, skip %v", n, skip)
	}
	if peak > 96<<20 {
		t.Fatalf("peak heap %d MiB", peak>>20)
	}
	// No whitespace at all: the text is the run, in one word.
	run := io.MultiReader(strings.NewReader("<p>"), &repeatReader{s: "é", left: 3 << 20}, strings.NewReader("</p>"))
	var sb strings.Builder
	x, err := Options{}.Open(run, "run.html", "")
	for err == nil {
		var part string
		if part, err = x.Next(1 << 20); err == nil {
			sb.WriteString(part)
		}
	}
	x.Close()
	if got := strings.TrimSpace(sb.String()); got != strings.Repeat("é", 3<<20/2) {
		t.Fatalf("a 3 MiB run came out as %d bytes, %q…", len(got), got[:min(40, len(got))])
	}
	comment := io.MultiReader(strings.NewReader("<p>hi</p><!--"), &repeatReader{s: "x", left: maxHTMLToken + 1}, strings.NewReader("-->"))
	if _, _, skip := drainAll(t, comment, "c.html", Options{}); skip == nil || skip.Reason != ReasonTooLarge {
		t.Fatalf("a comment over %d bytes: skip %v", maxHTMLToken, skip)
	}
}

// TestXLSXBombs: one large shared string referenced from every cell gave
// 4 GiB of text from a 1.3 MB file; 32 MiB of empty <si/> entries took
// 341 MiB. The first is over its text budget now, the second over the
// entry cap; both skipped in bounded memory.
func TestXLSXBombs(t *testing.T) {
	big, empties := extracttest.SharedStringBombXLSX(), extracttest.EmptyEntriesXLSX()
	for name, c := range map[string]struct {
		doc    []byte
		reason string
	}{"one shared string in 200,000 cells": {big, ReasonTextTooLarge}, "32 MiB of empty entries": {empties, ReasonTooLarge}} {
		var n int64
		var skip *Skip
		peak := peakHeap(func() { n, _, skip = drainAll(t, bytes.NewReader(c.doc), "book.xlsx", Options{}) })
		t.Logf("%s (%d bytes): %d bytes of text before the skip %v, peak heap %d MiB", name, len(c.doc), n, skip, peak>>20)
		if skip == nil || skip.Reason != c.reason {
			t.Fatalf("skip %v, want %s", skip, c.reason)
		}
		if peak > 160<<20 {
			t.Fatalf("peak heap %d MiB", peak>>20)
		}
	}
}

// TestLongMimetypeIsABoundedReason: a zip whose mimetype part is 4 MiB put
// the whole part into the skip reason (logged, saved in object state); the
// reason is at most 256 bytes now, the tenant's text quoted.
func TestLongMimetypeIsABoundedReason(t *testing.T) {
	doc := extracttest.LongMimetypeZip()
	_, _, skip := drainAll(t, bytes.NewReader(doc), "odd.zip", Options{})
	if skip == nil || skip.Reason != ReasonBinary {
		t.Fatalf("skip %v", skip)
	}
	if len(skip.Error()) > 256 || strings.Contains(skip.Error(), "\x01") {
		t.Fatalf("reason of %d bytes: %.200q…", len(skip.Error()), skip.Error())
	}
	t.Logf("reason (%d bytes): %s", len(skip.Error()), skip.Error())
}

// TestHugePackagePartIsSkipped: an EPUB whose package document lists
// millions of spine entries was read and decoded whole (up to the 128 MiB
// part cap); package parts read whole are capped at maxPackageBytes now.
func TestHugePackagePartIsSkipped(t *testing.T) {
	var opf strings.Builder
	opf.WriteString(`<package><manifest><item id="c1" href="ch1.xhtml"/></manifest><spine>`)
	for i := 0; opf.Len() < maxPackageBytes+1; i++ {
		opf.WriteString(`<itemref idref="c1" n="` + extracttest.Noise(uint64(i), 4, "0123456789") + `"/>`)
	}
	opf.WriteString(`</spine></package>`)
	epub := extracttest.Zip("mimetype", "application/epub+zip",
		"META-INF/container.xml", `<container><rootfiles><rootfile full-path="content.opf"/></rootfiles></container>`,
		"content.opf", opf.String(), "ch1.xhtml", `<html><body><p>One chapter.</p></body></html>`)
	var skip *Skip
	peak := peakHeap(func() { _, _, skip = drainAll(t, bytes.NewReader(epub), "book.epub", Options{}) })
	t.Logf("an EPUB with a %d-byte package document: %v, peak heap %d MiB", opf.Len(), skip, peak>>20)
	if skip == nil || skip.Reason != ReasonTooLarge {
		t.Fatalf("skip %v", skip)
	}
}
