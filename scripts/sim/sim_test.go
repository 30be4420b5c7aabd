//go:build sim

// Package sim measures how the fleet scales out: many tenants, many
// in-process workers (each with its own NATS connection and its own
// credential broker, as separate processes have), against the STS and S3
// fakes with realistic latency. `make sim` runs it at full size and prints
// the table of the README's scale-out section; `make test` runs a small
// smoke (STEVEDORE_SIM=smoke) so it keeps working. Nothing here is a timed
// assertion: the numbers are reported, and only exactness is checked.
package sim

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"
	"golang.org/x/time/rate"

	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/schema/natstest"
	"github.com/stevedore-dev/stevedore/schema/registry"
	"github.com/stevedore-dev/stevedore/worker"
	"github.com/stevedore-dev/stevedore/worker/creds"
	"github.com/stevedore-dev/stevedore/worker/creds/awstest"
)

// Latencies of the fakes: a realistic S3 GET and AssumeRole.
const (
	getLatency    = 30 * time.Millisecond
	assumeLatency = 50 * time.Millisecond
)

func smoke() bool { return os.Getenv("STEVEDORE_SIM") == "smoke" }

// size picks the full value, or the smoke's.
func size(full, small int) int {
	if smoke() {
		return small
	}
	return full
}

// env is one simulated deployment: a NATS server, the registry, the fakes.
type env struct {
	t    *testing.T
	srv  interface{ ClientURL() string }
	js   jetstream.JetStream
	reg  *registry.Registry
	sts  *awstest.STS
	s3   *awstest.S3
	orgs []*tenant
}

type tenant struct {
	org    *registry.Org
	in     *registry.Integration
	bucket string
}

func newEnv(t *testing.T, orgs int) *env {
	t.Helper()
	srv, _, js := natstest.Start(t)
	reg, err := registry.Open(context.Background(), js, registry.Config{})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, srv: srv, js: js, reg: reg}
	e.sts, e.s3 = awstest.Start(t)
	e.sts.AssumeLatency.Store(int64(assumeLatency))
	e.s3.GetLatency.Store(int64(getLatency))
	ctx := context.Background()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(16)
	e.orgs = make([]*tenant, orgs)
	for i := range e.orgs {
		g.Go(func() error {
			org, _, err := reg.CreateOrg(gctx, "sim", fmt.Sprintf("Tenant %d", i))
			if err != nil {
				return err
			}
			bucket := fmt.Sprintf("tenant-%05d", i)
			role := fmt.Sprintf("arn:aws:iam::%s:role/sim-%05d", awstest.Account, i)
			e.sts.SetRole(awstest.Role{ARN: role, Principal: awstest.Principal, ExternalID: org.ExternalID, Buckets: []string{bucket}})
			e.s3.CreateBucket(bucket)
			in, err := reg.AddIntegration(gctx, "sim", org.ID, registry.Spec{RoleARN: role, Buckets: []string{bucket}})
			if err != nil {
				return err
			}
			if in, err = reg.RecordVerification(gctx, "sim", org.ID, in.ID, &registry.Verification{At: time.Now(), OK: true}); err != nil {
				return err
			}
			e.orgs[i] = &tenant{org: org, in: in, bucket: bucket}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	return e
}

// put stores n objects under prefix in the tenant's bucket.
func (e *env) put(tn *tenant, prefix string, n int) {
	for i := 0; i < n; i++ {
		e.s3.Put(tn.bucket, fmt.Sprintf("%sdoc-%06d.txt", prefix, i), fmt.Sprintf("Document %d of %s. A few words to count.", i, tn.bucket))
	}
}

// fleet starts n workers, each with its own NATS connection and broker
// (AssumeRole calls limited to stsRate per second, burst a tenth of it).
func (e *env) fleet(n int, stsRate int, opts func(*worker.Config)) (stop func()) {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		nc, err := nats.Connect(e.srv.ClientURL())
		if err != nil {
			e.t.Fatal(err)
		}
		js, _ := jetstream.New(nc)
		broker, err := creds.New(creds.Config{STS: e.sts.Client(), Rate: rate.Limit(stsRate), Burst: max(1, stsRate/10)})
		if err != nil {
			e.t.Fatal(err)
		}
		cfg := worker.Config{JS: js, Registry: e.reg, Broker: broker, AWS: e.s3.Config(), S3PathStyle: true, Name: fmt.Sprintf("sim-%d", i),
			Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})).With("worker", i)}
		if opts != nil {
			opts(&cfg)
		}
		w, err := worker.New(ctx, cfg)
		if err != nil {
			e.t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer nc.Close()
			if err := w.Run(ctx); err != nil {
				e.t.Error(err)
			}
		}()
	}
	// Let every worker see every other's lease before work arrives.
	time.Sleep(500 * time.Millisecond)
	return func() { cancel(); wg.Wait() }
}

// submit records a directory job and publishes its page 0, as the API does.
func (e *env) submit(tn *tenant, id, prefix string) {
	e.t.Helper()
	ctx := context.Background()
	job := &schema.Job{JobID: id, Org: tn.org.ID, Collection: "docs", IntegrationID: tn.in.ID, Kind: schema.JobDirectory, Bucket: tn.bucket,
		Prefix: prefix, Region: "us-east-1", CreatedAt: time.Now()}
	data, _ := json.Marshal(schema.NewJobStatus(job))
	kv, _ := e.js.KeyValue(ctx, schema.BucketJobs)
	if _, err := kv.Create(ctx, id, data); err != nil {
		e.t.Fatal(err)
	}
	if _, err := schema.PublishAll(ctx, e.js, []schema.Out{{Subject: schema.JobSubject(tn.org.ID, "docs"), MsgID: schema.JobPageMsgID(id, 0), Msg: job}}); err != nil {
		e.t.Fatal(err)
	}
}

// wait follows the job records (a KV watch, not polling: a thousand jobs
// polled every few milliseconds would be the load) until every one of ids
// is final; it returns when each ended.
func (e *env) wait(ids []string, timeout time.Duration) map[string]time.Time {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	kv, _ := e.js.KeyValue(ctx, schema.BucketJobs)
	want := map[string]bool{}
	for _, id := range ids {
		want[id] = true
	}
	w, err := kv.WatchAll(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	defer w.Stop()
	done := map[string]time.Time{}
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	for len(done) < len(ids) {
		select {
		case <-tick.C:
			e.t.Logf("%d of %d jobs final", len(done), len(ids))
			if left := len(ids) - len(done); left > 0 && left <= 5 {
				for _, id := range ids {
					if _, ok := done[id]; !ok {
						if entry, err := kv.Get(ctx, id); err == nil {
							e.t.Logf("  waiting: %s", entry.Value())
						}
					}
				}
				for _, stream := range []string{schema.StreamJobs, schema.StreamTasks} {
					st, _ := e.js.Stream(ctx, stream)
					info, _ := st.Info(ctx, jetstream.WithSubjectFilter(">"))
					e.t.Logf("  %s: %d messages, %d subjects", stream, info.State.Msgs, len(info.State.Subjects))
				}
			}
		case <-ctx.Done():
			e.t.Fatalf("%d of %d jobs final after %s", len(done), len(ids), timeout)
		case entry := <-w.Updates():
			if entry == nil || !want[entry.Key()] {
				continue
			}
			if _, ok := done[entry.Key()]; ok {
				continue
			}
			var st schema.JobStatus
			_ = json.Unmarshal(entry.Value(), &st)
			if st.Final() {
				if st.Status != schema.JobStatusCompleted {
					e.t.Fatalf("job %s ended %s: %+v", entry.Key(), st.Status, st.Error)
				}
				done[entry.Key()] = time.Now()
			}
		}
	}
	return done
}

var report struct {
	sync.Mutex
	lines []string
}

func logf(t *testing.T, format string, args ...any) {
	line := fmt.Sprintf(format, args...)
	t.Log(line)
	report.Lock()
	report.lines = append(report.lines, line)
	report.Unlock()
}

func TestMain(m *testing.M) {
	code := m.Run()
	if len(report.lines) > 0 {
		fmt.Println("\nscale-out simulation (S3 GET " + getLatency.String() + ", AssumeRole " + assumeLatency.String() + "):")
		for _, l := range report.lines {
			fmt.Println("  " + l)
		}
	}
	os.Exit(code)
}

// TestSTSCallsPerJob: tenants × jobs on ten workers, each job a directory
// of a few objects; AssumeRole calls with tenant affinity against every
// worker serving every tenant (the design before), in the same run.
func TestSTSCallsPerJob(t *testing.T) {
	tenants, jobs, workers := size(500, 20), 3, size(10, 4)
	for _, affinity := range []bool{false, true} {
		e := newEnv(t, tenants)
		for _, tn := range e.orgs {
			for j := 0; j < jobs; j++ {
				e.put(tn, fmt.Sprintf("job%d/", j), 4)
			}
		}
		stop := e.fleet(workers, 1000, func(c *worker.Config) { c.NoAffinity = !affinity; c.TaskConcurrency = 8 })
		before := e.sts.AssumeCalls()
		start := time.Now()
		var ids []string
		for i, tn := range e.orgs {
			for j := 0; j < jobs; j++ {
				id := fmt.Sprintf("job_%d_%d", i, j)
				e.submit(tn, id, fmt.Sprintf("job%d/", j))
				ids = append(ids, id)
			}
		}
		e.wait(ids, 20*time.Minute)
		took := time.Since(start)
		calls := e.sts.AssumeCalls() - before
		stop()
		name := "every worker serves every tenant (before)"
		if affinity {
			name = "tenant affinity (after)"
		}
		logf(t, "STS: %d tenants × %d jobs (4 objects each) on %d workers, %s: %d AssumeRole calls = %.2f × (tenants × jobs), %s",
			tenants, jobs, workers, name, calls, float64(calls)/float64(tenants*jobs), took.Round(100*time.Millisecond))
	}
}

// TestThroughputScales: a latency-bound load (every GET waits 30 ms) on 1,
// 2, 4 and 8 workers of 2 task slots each.
func TestThroughputScales(t *testing.T) {
	tenants, perTenant := size(64, 8), size(60, 10)
	var base float64
	for _, n := range []int{1, 2, 4, 8} {
		if smoke() && n > 2 {
			break
		}
		e := newEnv(t, tenants)
		for _, tn := range e.orgs {
			e.put(tn, "load/", perTenant)
		}
		stop := e.fleet(n, 1000, func(c *worker.Config) { c.TaskConcurrency = 2 })
		start := time.Now()
		var ids []string
		for i, tn := range e.orgs {
			id := fmt.Sprintf("load_%d", i)
			e.submit(tn, id, "load/")
			ids = append(ids, id)
		}
		e.wait(ids, 20*time.Minute)
		rate := float64(tenants*perTenant) / time.Since(start).Seconds()
		stop()
		if n == 1 {
			base = rate
		}
		logf(t, "throughput: %d workers × 2 slots, %d tenants × %d objects: %.0f objects/s, efficiency %.2f (ideal %d × %.0f)",
			n, tenants, perTenant, rate, rate/(float64(n)*base), n, base)
	}
}

// TestSmallTenantsBehindABacklog: orgs with one small job each, submitted
// while one tenant has a large backlog; reports consumers, memory and the
// small jobs' latency.
func TestSmallTenantsBehindABacklog(t *testing.T) {
	counts := []int{size(1000, 50), size(5000, 0)}
	if v := os.Getenv("STEVEDORE_SIM_ORGS"); v != "" { // e.g. "1000" or "1000,5000"
		counts = nil
		for _, f := range strings.Split(v, ",") {
			var n int
			fmt.Sscan(f, &n)
			counts = append(counts, n)
		}
	}
	backlog := size(100_000, 2000)
	if v := os.Getenv("STEVEDORE_SIM_BACKLOG"); v != "" {
		fmt.Sscan(v, &backlog)
	}
	for _, orgs := range counts {
		if orgs == 0 {
			continue
		}
		e := newEnv(t, orgs+1)
		big := e.orgs[0]
		e.put(big, "bulk/", backlog)
		for _, tn := range e.orgs[1:] {
			e.put(tn, "small/", 1)
		}
		stop := e.fleet(4, 1000, nil)
		e.submit(big, "bulk", "bulk/")
		// Wait until the backlog is planned far enough to be a backlog.
		time.Sleep(3 * time.Second)
		// Round 1: every small tenant is new (its consumers are made on
		// the way); round 2: the same tenants again, consumers in place.
		var rounds [2][]time.Duration
		for round := range rounds {
			submitted := map[string]time.Time{}
			var ids []string
			for i, tn := range e.orgs[1:] {
				id := fmt.Sprintf("small_%d_%d", round, i)
				submitted[id] = time.Now()
				e.submit(tn, id, "small/")
				ids = append(ids, id)
			}
			for id, at := range e.wait(ids, 20*time.Minute) {
				rounds[round] = append(rounds[round], at.Sub(submitted[id]))
			}
			slices.Sort(rounds[round])
		}
		cold, warm := rounds[0], rounds[1]
		ctx := context.Background()
		consumers := 0
		for _, stream := range []string{schema.StreamJobs, schema.StreamTasks} {
			s, _ := e.js.Stream(ctx, stream)
			info, _ := s.Info(ctx)
			consumers += info.State.Consumers
		}
		var bulk schema.JobStatus
		kv, _ := e.js.KeyValue(ctx, schema.BucketJobs)
		if entry, err := kv.Get(ctx, "bulk"); err == nil {
			_ = json.Unmarshal(entry.Value(), &bulk)
		}
		stop()
		logf(t, "%d small tenants (a 1-object job each, all at once) behind a %d-object backlog on 4 workers: job latency new tenants p50 %s / p99 %s, known tenants p50 %s / p99 %s; %d consumers; process RSS %d MiB; the backlog had %d of %d done",
			orgs, backlog, pct(cold, 0.5), pct(cold, 0.99), pct(warm, 0.5), pct(warm, 0.99), consumers, rssMiB(),
			bulk.FilesIndexed, bulk.FilesTotal)
	}
}

// TestOneFileJobBehindManyJobs: tenant B's one-file job behind 40 (and 400)
// jobs of tenant A, with a 4/s AssumeRole limit per worker.
func TestOneFileJobBehindManyJobs(t *testing.T) {
	for _, jobs := range []int{40, size(400, 40)} {
		e := newEnv(t, 2)
		a, b := e.orgs[0], e.orgs[1]
		for j := 0; j < jobs; j++ {
			e.put(a, fmt.Sprintf("a%03d/", j), 2)
		}
		e.put(b, "urgent/", 1)
		stop := e.fleet(2, 4, nil)
		var ids []string
		for j := 0; j < jobs; j++ {
			id := fmt.Sprintf("a_%d", j)
			e.submit(a, id, fmt.Sprintf("a%03d/", j))
			ids = append(ids, id)
		}
		start := time.Now()
		e.submit(b, "b_urgent", "urgent/")
		took := e.wait([]string{"b_urgent"}, 10*time.Minute)["b_urgent"].Sub(start)
		e.wait(ids, 20*time.Minute)
		stop()
		logf(t, "tenant B's one-file job behind %d jobs of tenant A (2 workers, AssumeRole 4/s per worker): %s", jobs, took.Round(time.Millisecond))
	}
}

// TestWakeFanOut: messages a worker receives to learn of new tasks, per
// task. Before: every task was delivered to every worker (workers per task).
func TestWakeFanOut(t *testing.T) {
	tenants, workers := size(50, 5), 4
	e := newEnv(t, tenants)
	for _, tn := range e.orgs {
		e.put(tn, "w/", 40)
	}
	nc, _ := nats.Connect(e.srv.ClientURL())
	defer nc.Close()
	var wakes, tasks atomic.Int64
	sub, _ := nc.Subscribe(schema.AllWakes("tasks"), func(m *nats.Msg) {
		wakes.Add(1)
		var n int64
		fmt.Sscan(string(m.Data), &n)
		tasks.Add(n)
	})
	defer sub.Unsubscribe()
	stop := e.fleet(workers, 1000, nil)
	var ids []string
	for i, tn := range e.orgs {
		id := fmt.Sprintf("w_%d", i)
		e.submit(tn, id, "w/")
		ids = append(ids, id)
	}
	e.wait(ids, 10*time.Minute)
	stop()
	logf(t, "wake-ups: %d tasks on %d workers: %d wake signals, %.3f messages per task per worker (before: 1 per task per worker, %d per task)",
		tasks.Load(), workers, wakes.Load(), float64(wakes.Load())/float64(tasks.Load()), workers)
}

func pct(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	return d[min(len(d)-1, int(q*float64(len(d))))].Round(time.Millisecond)
}

func rssMiB() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			var kb int64
			fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), &kb)
			return kb / 1024
		}
	}
	return 0
}
