package runner_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/schema/natstest"
	"github.com/stevedore-dev/stevedore/worker/runner"
)

// collector is a new kind of work (it keeps what it is given): three methods make it a handler. Handle
// returns nil or an error and never settles the message: the runner acks,
// retries with backoff, or gives up (then it publishes what GiveUp returns
// together with the dead letter, so whatever counts the work stays exact).
type collector struct {
	mu  sync.Mutex
	out []string
}

func (u *collector) Name() string { return "collect" }

func (u *collector) Handle(ctx context.Context, msg jetstream.Msg) error {
	if len(msg.Data()) == 0 {
		return schema.Errorf(schema.ClassPermanent, "empty message") // dead-lettered, never retried
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	u.out = append(u.out, string(msg.Data()))
	return nil
}

func (u *collector) GiveUp(data []byte, f *schema.ClassError) ([]schema.Out, error) { return nil, nil }

// A handler is added to a Runner as the handler of a queue: a work-queue
// stream claimed per org (each org's consumer made on first sight, turns
// taken fairly between orgs). In the worker, a new handler is one more
// Queue in worker.go's runnerConfig; here it claims TASKS.
func ExampleRunner() {
	dir, _ := os.MkdirTemp("", "stevedore-runner-example")
	defer os.RemoveAll(dir)
	_, _, js, stop, err := natstest.Run(dir) // an in-process nats-server
	if err != nil {
		fmt.Println(err)
		return
	}
	defer stop()
	ctx := context.Background()
	topo := schema.Topology{}.WithDefaults()
	if err := topo.Ensure(ctx, js); err != nil {
		fmt.Println(err)
		return
	}
	for _, m := range []string{"alpha", "beta", "gamma"} {
		_, _ = js.Publish(ctx, schema.TaskSubject("org_example", "docs"), []byte(m))
	}

	h := &collector{}
	r, err := runner.New(runner.Config{JS: js, Queues: []runner.Queue{{
		Kind: "tasks", Stream: schema.StreamTasks, Filter: schema.AllTasks, OrgOf: schema.OrgOfTaskSubject,
		Consumer: topo.IndexerConfig, PerOrg: 2, Slots: 2, MaxDeliver: topo.MaxDeliver, Handler: h,
	}}})
	if err != nil {
		fmt.Println(err)
		return
	}
	run, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(run) }()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		h.mu.Lock()
		n := len(h.out)
		h.mu.Unlock()
		if n == 3 {
			break
		}
	}
	cancel()
	fmt.Println("stopped:", <-done)
	slices.Sort(h.out)
	fmt.Println(h.out)
	// Output:
	// stopped: <nil>
	// [alpha beta gamma]
}
