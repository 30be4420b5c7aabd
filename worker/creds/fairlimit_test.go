package creds

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

// Org B's one call, made after org A queued twenty, is granted within one
// turn, not after A's twenty; each org's calls keep their order; a caller
// that gives up is skipped.
func TestFairLimiterTakesTurns(t *testing.T) {
	f := newFairLimiter(rate.Limit(50), 1)
	var mu sync.Mutex
	var grants []string
	var wg sync.WaitGroup
	call := func(ctx context.Context, org string, i int) {
		defer wg.Done()
		if err := f.Wait(ctx, org); err != nil {
			return
		}
		mu.Lock()
		grants = append(grants, fmt.Sprintf("%s%d", org, i))
		mu.Unlock()
	}
	queued := func(org string, n int) {
		deadline := time.Now().Add(10 * time.Second)
		for {
			f.mu.Lock()
			got := len(f.queues[org])
			f.mu.Unlock()
			if got >= n || time.Now().After(deadline) {
				return
			}
			time.Sleep(time.Millisecond)
		}
	}
	_ = f.lim.Wait(context.Background()) // take the burst: everyone below waits
	f.mu.Lock()                          // hold the dispatcher until everyone is queued
	wg.Add(22)
	for i := 0; i < 20; i++ {
		go call(context.Background(), "A", i)
	}
	f.mu.Unlock()
	queued("A", 18)
	gone, cancel := context.WithCancel(context.Background())
	go call(gone, "C", 0)
	queued("C", 1)
	cancel()
	go call(context.Background(), "B", 0)
	queued("B", 1)
	mu.Lock()
	before := len(grants) // A's grants before B was queued
	mu.Unlock()
	wg.Wait()
	pos := -1
	for i, g := range grants {
		if g == "B0" {
			pos = i
		}
		if g == "C0" {
			t.Fatalf("a caller that gave up was granted: %v", grants)
		}
	}
	if pos < 0 || pos > before+1 {
		t.Fatalf("B granted at position %d of %v, queued after %d grants: want within one turn", pos, grants, before)
	}
	if len(grants) != 21 {
		t.Fatalf("%d grants, want 21: %v", len(grants), grants)
	}
}
