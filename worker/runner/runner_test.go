package runner

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/schema/natstest"
)

// fakeHandler is a Handler whose Handle is the test's: this is all a new
// handler needs to be run, claimed fairly and settled.
type fakeHandler struct {
	handle func(ctx context.Context, msg jetstream.Msg) error
	gaveUp atomic.Int64
	// failGiveUps: GiveUp fails (a status it could not record) while this
	// is positive, counting it down.
	failGiveUps atomic.Int64
}

func (h *fakeHandler) Name() string { return "fake" }

func (h *fakeHandler) Handle(ctx context.Context, msg jetstream.Msg) error { return h.handle(ctx, msg) }

// GiveUp publishes an outcome named after the payload, as the index
// handler's failed object is.
func (h *fakeHandler) GiveUp(data []byte, f *schema.ClassError) ([]schema.Out, error) {
	for n := h.failGiveUps.Load(); n > 0; n = h.failGiveUps.Load() {
		if h.failGiveUps.CompareAndSwap(n, n-1) {
			return nil, errors.New("the failed status could not be written")
		}
	}
	ev := &schema.ObjectEvent{EventID: "failed-" + string(data), Org: "org_1", Collection: "docs", Bucket: "b", Key: string(data),
		Outcome: schema.OutcomeFailed, ErrorClass: string(f.Class), At: time.Now().UTC()}
	return []schema.Out{{Subject: schema.ObjectEventSubject("org_1", "docs"), MsgID: ev.EventID, Msg: ev}}, nil
}

func (h *fakeHandler) GaveUp() { h.gaveUp.Add(1) }

// fakeRunner is a Runner on an in-process nats-server with the topology,
// claiming TASKS with a fakeHandler running handle.
func fakeRunner(t *testing.T, handle func(ctx context.Context, msg jetstream.Msg) error, opts ...func(*Config)) (jetstream.JetStream, *Runner, *Queue) {
	t.Helper()
	_, _, js := natstest.Start(t)
	topo := schema.Topology{AckWait: 2 * time.Second, Update: true}
	if err := topo.Ensure(context.Background(), js); err != nil {
		t.Fatal(err)
	}
	h := &fakeHandler{handle: handle}
	cfg := Config{JS: js, DiscoverEvery: 50 * time.Millisecond, Heartbeat: time.Second, ShutdownGrace: time.Second, Registerer: prometheus.NewRegistry(),
		Queues: []Queue{{Kind: "tasks", Stream: schema.StreamTasks, Filter: schema.AllTasks, OrgOf: schema.OrgOfTaskSubject,
			Consumer: topo.WithDefaults().IndexerConfig, PerOrg: 2, Slots: 3, MaxDeliver: 3, Report: true, Handler: h}}}
	for _, o := range opts {
		o(&cfg)
	}
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return js, r, &r.cfg.Queues[0]
}

// outcomes counts the give-up outcomes published.
func outcomes(t *testing.T, js jetstream.JetStream) uint64 {
	t.Helper()
	events, _ := js.Stream(context.Background(), schema.StreamEvents)
	info, err := events.Info(context.Background(), jetstream.WithSubjectFilter(schema.ObjectEventSubject("org_1", "docs")))
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Subjects[schema.ObjectEventSubject("org_1", "docs")]
}

// run runs r until the test ends.
func run(t *testing.T, r *Runner) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
}

// TestRunnerWithAFakeHandler: the runner claims every org's messages,
// retries a transient failure with backoff, gives up on a permanent one
// (DEAD copy and the handler's outcome, once) and acknowledges the rest,
// without knowing what the messages are.
func TestRunnerWithAFakeHandler(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]int{}
	js, r, q := fakeRunner(t, func(ctx context.Context, msg jetstream.Msg) error {
		mu.Lock()
		defer mu.Unlock()
		body := string(msg.Data())
		seen[body]++
		switch {
		case strings.HasPrefix(body, "flaky") && seen[body] == 1:
			return errors.New("try again")
		case strings.HasPrefix(body, "poison"):
			return schema.Errorf(schema.ClassPermanent, "never readable")
		}
		return nil
	})
	ctx := context.Background()
	var want []string
	for _, org := range []string{"org_1", "org_2"} {
		for i := 0; i < 5; i++ {
			want = append(want, fmt.Sprintf("%s-%d", org, i))
		}
	}
	want = append(want, "flaky-1", "poison-1")
	for _, body := range want {
		org := "org_1"
		if strings.HasPrefix(body, "org_2") {
			org = "org_2"
		}
		if _, err := js.Publish(ctx, schema.TaskSubject(org, "docs"), []byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	run(t, r)
	waitFor(t, func() bool {
		tasks, _ := js.Stream(ctx, schema.StreamTasks)
		info, err := tasks.Info(ctx)
		return err == nil && info.State.Msgs == 0
	})
	mu.Lock()
	for _, body := range want {
		n, wantN := seen[body], 1
		if body == "flaky-1" {
			wantN = 2
		}
		if n != wantN {
			t.Errorf("%s handled %d times, want %d", body, n, wantN)
		}
	}
	mu.Unlock()
	if n := outcomes(t, js); n != 1 {
		t.Fatalf("%d give-up outcomes, want 1 (poison-1)", n)
	}
	if n := q.Handler.(*fakeHandler).gaveUp.Load(); n != 1 {
		t.Fatalf("GaveUp ran %d times", n)
	}
	reg := r.cfg.Registerer.(*prometheus.Registry)
	if n := testutil.ToFloat64(r.m.settled.WithLabelValues("fake", "dead", string(schema.ClassPermanent))); n != 1 {
		t.Fatalf("%v dead settlements", n)
	}
	if n, err := testutil.GatherAndCount(reg, "stevedore_fair_orgs_with_tasks"); err != nil || n != 1 {
		t.Fatalf("fairness metrics: %d, %v", n, err)
	}
}

func waitFor(t *testing.T, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 20 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
