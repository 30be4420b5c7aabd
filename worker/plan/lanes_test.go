package plan

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stevedore-dev/stevedore/schema"
)

// Split points fall strictly inside what is left of a lane, placed by the
// page's own keys (numbered keys split as numbers, hashes as hex); a lane
// too deep, too small or without room does not split.
func TestSplitPoint(t *testing.T) {
	page := func(format string, from, to int) []string {
		var keys []string
		for i := from; i <= to; i++ {
			keys = append(keys, fmt.Sprintf(format, i))
		}
		return keys
	}
	for _, c := range []struct {
		page    []string
		through string
		depth   int
		want    string // "": no split
	}{
		{page("obj-%06d", 0, 999), "", 0, "obj-053502"},                   // ~53 pages on: a bounded run split off the tail
		{page("obj-%06d", 0, 999), "", 1, "obj-1"},                        // runs grow with depth
		{page("bench/obj-%06d.txt", 0, 9), "", 0, "bench/obj-000492.txt"}, // structure kept
		{page("%08x", 0x3f2a0000, 0x3f2a03e7), "", 0, "3f2c081d"},         // hex
		{page("obj-%06d", 10000, 10999), "obj-050000", 1, "obj-0305"},     // a bounded lane: the middle of what is left
		{page("obj-%06d", 10000, 10999), "obj-020000", 1, ""},             // 9 pages left: too few
		{page("obj-%06d", 0, 999), "", MaxLaneDepth, ""},                  // deep enough
		{[]string{"a"}, "", 0, ""},                                        // one key: no span
		{page("~~~~~%d", 0, 9), "", 0, ""},                                // no room after the page
	} {
		got, ok := splitPoint(c.page, c.through, c.depth)
		if ok != (c.want != "") || got != c.want {
			t.Errorf("%q..%q through %q depth %d: %q %v, want %q", c.page[0], c.page[len(c.page)-1], c.through, c.depth, got, ok, c.want)
		}
		if ok && (got <= c.page[len(c.page)-1] || c.through != "" && got >= c.through || strings.ContainsFunc(got, func(r rune) bool { return r < 0x20 || r > 0x7e })) {
			t.Errorf("%q: outside the lane's rest, or not printable ASCII", got)
		}
	}
}

// A big bucket planned in lanes, its pages handled in any order by any
// planner, lists every key exactly once; folding the events in any order
// (a lane's pages folded before the page that split it off), the record
// read back from JSON now and then, says planned only once every page is
// folded, with the whole count, and keeps only the lanes still at work.
func TestLanesListEveryKeyOnce(t *testing.T) {
	var keys []string
	for i := range 1500 {
		keys = append(keys, fmt.Sprintf("bench/obj-%06d.txt", i))
	}
	for i := range 400 {
		keys = append(keys, fmt.Sprintf("hash/%08x", rand.Uint32()), fmt.Sprintf("z/%d/é-%d", i%7, i))
	}
	var sidecars []string // every seventh document has one
	for i := 0; i < len(keys); i += 7 {
		sidecars = append(sidecars, schema.SidecarKey(keys[i]))
	}
	p := newPlanner(t, append(slices.Clone(keys), sidecars...)...)
	p.h.cfg.PageSize = 10
	rng := rand.New(rand.NewPCG(1, 2))
	queue := []*schema.Job{&p.job}
	seen := map[string]int{}
	var events []*schema.JobEvent
	lanes := map[string]bool{"": true}
	for len(queue) > 0 {
		i := rng.IntN(len(queue))
		job := queue[i]
		queue = slices.Delete(queue, i, i+1)
		planned, next, ev := p.pages(t, job)
		for _, k := range planned {
			seen[k]++
		}
		// What a task says it knows of its sidecar is true.
		for _, o := range p.out[len(p.out)-1] {
			if task := taskOf(t, o); task != nil && task.SidecarKnown && (task.SidecarETag != "") != slices.Contains(sidecars, schema.SidecarKey(task.Key)) {
				t.Errorf("%s: the task says its sidecar is %q", task.Key, task.SidecarETag)
			}
		}
		for _, n := range next {
			lanes[n.Lane] = true
		}
		queue = append(queue, next...)
		events = append(events, ev)
	}
	for _, k := range keys {
		if seen[k] != 1 {
			t.Errorf("%s planned %d times", k, seen[k])
		}
	}
	if len(seen) != len(keys) {
		t.Errorf("%d keys planned, %d in the bucket", len(seen), len(keys))
	}
	if len(lanes) < 8 {
		t.Errorf("only %d lanes for %d pages", len(lanes), len(events))
	}
	for round := range 20 {
		rng.Shuffle(len(events), func(i, j int) { events[i], events[j] = events[j], events[i] })
		st := schema.NewJobStatus(&p.job)
		for i, ev := range events {
			st.Apply(uint64(i+1), ev, time.Now())
			if st.Planned() != (i == len(events)-1) {
				t.Fatalf("round %d: planned %v after %d of %d events", round, st.Planned(), i+1, len(events))
			}
			if i%5 == 0 {
				data, _ := json.Marshal(st)
				st = &schema.JobStatus{}
				if err := json.Unmarshal(data, st); err != nil {
					t.Fatal(err)
				}
			}
		}
		if !st.Planned() || st.FilesTotal != int64(len(keys)) || len(st.Lanes) != 0 || st.LanesDone != len(lanes) {
			t.Fatalf("round %d: files_total %d, want %d; lanes at work %v, %d done of %d", round, st.FilesTotal, len(keys), st.Lanes, st.LanesDone, len(lanes))
		}
	}
	t.Logf("%d keys in %d pages over %d lanes", len(keys), len(events), len(lanes))
}

// A lane splits only while its job has fewer than MaxLiveLanes lanes at
// work: the first page of a big bucket splits, and the same page of a job
// whose record counts MaxLiveLanes lanes at work goes on as one lane.
func TestLanesSplitOnlyWhileFewAtWork(t *testing.T) {
	var keys []string
	for i := range 200 {
		keys = append(keys, fmt.Sprintf("obj-%06d", i))
	}
	p := newPlanner(t, keys...)
	if _, next, _ := p.pages(t, &p.job); len(next) != 2 {
		t.Fatalf("a big bucket's first page went on as %d lanes", len(next))
	}
	busy := p.job
	busy.JobID = "job_busy"
	st := schema.NewJobStatus(&busy)
	for i := range MaxLiveLanes {
		st.Lanes[fmt.Sprintf("lane%d", i)] = schema.Lane{Start: -1, Last: -1}
	}
	if err := p.store.Create(context.Background(), st); err != nil {
		t.Fatal(err)
	}
	if _, next, _ := p.pages(t, &busy); len(next) != 1 || next[0].Lane != "" {
		t.Fatalf("with %d lanes at work the page went on as %+v", MaxLiveLanes, next)
	}
}

// TestLanesKeepAHugeBucketWide plans a model of a 100,000,000-key bucket
// (keys obj-000000000…, 1,000 a page; each page's split decided by
// splitPoint on a sample of its keys, as splitLane does) with 200 planning
// slots, a page per slot per round: the listing must take close to the
// rounds MaxLiveLanes lanes need, not the ~84,000 pages the lane running to
// the bucket's end was left with when a depth of 8 bounded the lanes.
func TestLanesKeepAHugeBucketWide(t *testing.T) {
	const keys, pageKeys, slots = 100_000_000, 1000, 200
	key := func(i int) string { return fmt.Sprintf("obj-%09d", i) }
	// upTo is how many keys sort at or before point.
	upTo := func(point string) int { return sort.Search(keys, func(i int) bool { return key(i) > point }) }
	type lane struct {
		name       string
		next, stop int // the lane's next key and its end (exclusive)
		bounded    bool
	}
	queue := []lane{{name: "", next: 0, stop: keys}}
	live, rounds, pages, widest := 1, 0, 0, 0
	for len(queue) > 0 {
		rounds++
		n := min(slots, len(queue))
		batch := queue[:n:n]
		queue = slices.Clone(queue[n:])
		widest = max(widest, live)
		for _, l := range batch {
			pages++
			end := min(l.next+pageKeys, l.stop)
			if end == l.stop {
				live--
				continue // the lane's last page
			}
			var sample []string // the page's first and last keys and every 50th between
			for i := l.next; i < end; i += 50 {
				sample = append(sample, key(i))
			}
			sample = append(sample, key(end-1))
			through := ""
			if l.bounded {
				through = key(l.stop - 1)
			}
			if point, ok := splitPoint(sample, through, len(l.name)); ok && live < MaxLiveLanes {
				cut := upTo(point)
				queue = append(queue, lane{l.name + "0", end, cut, true}, lane{l.name + "1", cut, l.stop, l.bounded})
				live++
				continue
			}
			queue = append(queue, lane{l.name, end, l.stop, l.bounded})
		}
	}
	ideal := keys / pageKeys / MaxLiveLanes
	if pages < keys/pageKeys || rounds > 2*ideal {
		t.Fatalf("%d pages in %d rounds; %d lanes at most need %d", pages, rounds, MaxLiveLanes, ideal)
	}
	t.Logf("%d keys: %d pages in %d rounds (%d with %d lanes at work throughout), at most %d lanes at once", keys, pages, rounds, ideal, MaxLiveLanes, widest)
}
