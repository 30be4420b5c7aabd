package creds

import (
	"context"
	"fmt"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// fairLimiter hands out a rate.Limiter's tokens to the waiting orgs in
// turn, round robin, each org's callers in arrival order: one tenant's burst
// of AssumeRole calls (forty jobs starting at once) delays another tenant's
// first call by at most one turn instead of queueing it behind the burst.
// With nobody waiting it is the plain limiter.
type fairLimiter struct {
	lim     *rate.Limiter
	mu      sync.Mutex
	queues  map[string][]*fairWaiter // by org
	order   []string                 // orgs with waiters
	next    int                      // whose turn it is in order
	running bool                     // the dispatcher is handing out tokens
}

type fairWaiter struct {
	ready chan struct{} // closed when granted
	gone  bool          // its caller gave up
}

func newFairLimiter(r rate.Limit, burst int) *fairLimiter {
	return &fairLimiter{lim: rate.NewLimiter(r, burst), queues: map[string][]*fairWaiter{}}
}

// Wait blocks until org's turn comes and a token is free, or ctx ends.
func (f *fairLimiter) Wait(ctx context.Context, org string) error {
	f.mu.Lock()
	if len(f.order) == 0 && f.lim.Allow() {
		f.mu.Unlock()
		return nil
	}
	if err := f.wouldExceed(ctx); err != nil {
		f.mu.Unlock()
		return err
	}
	w := &fairWaiter{ready: make(chan struct{})}
	if len(f.queues[org]) == 0 {
		f.order = append(f.order, org)
	}
	f.queues[org] = append(f.queues[org], w)
	if !f.running {
		f.running = true
		go f.dispatch()
	}
	f.mu.Unlock()
	select {
	case <-w.ready:
		return nil
	case <-ctx.Done():
		f.mu.Lock()
		defer f.mu.Unlock()
		select {
		case <-w.ready:
			return nil // granted as the caller gave up: use it
		default:
		}
		w.gone = true
		return fmt.Errorf("rate: gave up waiting for a turn: %w", ctx.Err())
	}
}

// wouldExceed refuses at once, as rate.Limiter.Wait does, a wait that
// cannot end before ctx's deadline: the next token's delay plus one token
// per caller already waiting. Called with f.mu held.
func (f *fairLimiter) wouldExceed(ctx context.Context) error {
	deadline, ok := ctx.Deadline()
	if !ok {
		return nil
	}
	now := time.Now()
	r := f.lim.ReserveN(now, 1)
	delay := r.DelayFrom(now)
	r.CancelAt(now)
	waiters := 0
	for _, q := range f.queues {
		waiters += len(q)
	}
	if lim := f.lim.Limit(); lim > 0 && lim != rate.Inf {
		delay += time.Duration(float64(waiters) / float64(lim) * float64(time.Second))
	}
	if now.Add(delay).After(deadline) {
		return fmt.Errorf("rate: waiting %s for a turn would exceed the context deadline", delay.Round(time.Millisecond))
	}
	return nil
}

// dispatch grants one waiter per token until nobody waits.
func (f *fairLimiter) dispatch() {
	for {
		f.mu.Lock()
		if !f.waiting() {
			f.running = false
			f.mu.Unlock()
			return
		}
		f.mu.Unlock()
		_ = f.lim.Wait(context.Background())
		f.mu.Lock()
		if w := f.pop(); w != nil {
			close(w.ready)
		}
		f.mu.Unlock()
	}
}

// waiting drops the callers that gave up and reports whether any remain.
func (f *fairLimiter) waiting() bool {
	for i := 0; i < len(f.order); {
		org := f.order[i]
		q := f.queues[org]
		for len(q) > 0 && q[0].gone {
			q = q[1:]
		}
		if len(q) == 0 {
			f.remove(i)
			continue
		}
		f.queues[org] = q
		i++
	}
	return len(f.order) > 0
}

// pop returns the first live waiter of the org whose turn it is.
func (f *fairLimiter) pop() *fairWaiter {
	if !f.waiting() {
		return nil
	}
	if f.next >= len(f.order) {
		f.next = 0
	}
	i := f.next
	org := f.order[i]
	q := f.queues[org]
	w := q[0]
	if len(q) == 1 {
		f.remove(i) // the next org slides into i: its turn
	} else {
		f.queues[org] = q[1:]
		f.next = i + 1
	}
	return w
}

func (f *fairLimiter) remove(i int) {
	delete(f.queues, f.order[i])
	f.order = append(f.order[:i], f.order[i+1:]...)
	if f.next > i {
		f.next--
	}
}
