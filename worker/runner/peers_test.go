package runner

import (
	"fmt"
	"slices"
	"testing"
)

// Every worker computes the same order: for each org exactly one worker
// ranks first and the ranks are a permutation; orgs spread evenly; a worker
// leaving moves only its own orgs.
func TestRendezvousRanks(t *testing.T) {
	var workers []string
	for i := 0; i < 10; i++ {
		workers = append(workers, fmt.Sprintf("host-%d-worker-%d", i, 1000+i))
	}
	home := func(org string, ws []string) string {
		for _, w := range ws {
			if rendezvousRank(org, w, ws) == 0 {
				return w
			}
		}
		return ""
	}
	homes := map[string]int{}
	before := map[string]string{}
	for o := 0; o < 5000; o++ {
		org := fmt.Sprintf("org_%016x", o*7919)
		var ranks []int
		for _, w := range workers {
			ranks = append(ranks, rendezvousRank(org, w, workers))
		}
		slices.Sort(ranks)
		for i, r := range ranks {
			if r != i {
				t.Fatalf("%s: ranks %v are not a permutation", org, ranks)
			}
		}
		before[org] = home(org, workers)
		homes[before[org]]++
	}
	for w, n := range homes {
		if n < 400 || n > 600 { // 500 expected of 5,000 orgs on 10 workers
			t.Errorf("%s is home to %d orgs", w, n)
		}
	}
	gone := workers[3]
	rest := slices.Delete(slices.Clone(workers), 3, 4)
	moved := 0
	for org, h := range before {
		now := home(org, rest)
		if h != gone && now != h {
			t.Fatalf("%s moved from %s to %s though %s is still live", org, h, now, h)
		}
		if h == gone {
			moved++
		}
	}
	if moved != homes[gone] {
		t.Fatalf("moved %d, want %d", moved, homes[gone])
	}
}

// An org is served by one worker until its backlog spills over, one more
// worker per SpillEvery waiting tasks.
func TestServesGrowsWithBacklog(t *testing.T) {
	workers := []string{"a", "b", "c", "d"}
	serving := func(pending uint64) int {
		n := 0
		for _, w := range workers {
			f := &peers{self: w, live: workers}
			if f.serves("org_x", pending, 64) {
				n++
			}
		}
		return n
	}
	for _, c := range []struct {
		pending uint64
		want    int
	}{{0, 1}, {1, 1}, {63, 1}, {64, 2}, {130, 3}, {100_000, 4}} {
		if got := serving(c.pending); got != c.want {
			t.Errorf("%d waiting: %d workers serve, want %d", c.pending, got, c.want)
		}
	}
	if !(*peers)(nil).serves("org_x", 0, 64) {
		t.Error("without affinity a worker must serve every org")
	}
}
