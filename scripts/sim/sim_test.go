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
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"golang.org/x/sync/errgroup"
	"golang.org/x/time/rate"

	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/schema/jobs"
	"github.com/stevedore-dev/stevedore/schema/natstest"
	"github.com/stevedore-dev/stevedore/schema/registry"
	"github.com/stevedore-dev/stevedore/scripts/stack"
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
	url  string
	pid  int // the nats-server process, when it is one (processServer)
	js   jetstream.JetStream
	reg  *registry.Registry
	sts  *awstest.STS
	s3   *awstest.S3
	orgs []*tenant
	regs []*prometheus.Registry // each worker's metrics
	jobs *jobs.Store
}

type tenant struct {
	org    *registry.Org
	in     *registry.Integration
	bucket string
}

func newEnv(t *testing.T, orgs int) *env {
	t.Helper()
	srv, _, js := natstest.Start(t)
	return setup(t, &env{t: t, url: srv.ClientURL(), js: js}, orgs)
}

// newProcessEnv is newEnv with nats-server as its own process (built from
// the module's pinned version), so its memory is its own.
func newProcessEnv(t *testing.T, orgs int) *env {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	root, err := stack.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin, err := stack.NATSServer(ctx, root)
	if err != nil {
		t.Fatal(err)
	}
	node, err := stack.StartNATS(ctx, t.TempDir(), bin)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(node.Stop)
	nc, err := nats.Connect(node.URLs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	if err := (schema.Topology{}).Ensure(ctx, js); err != nil {
		t.Fatal(err)
	}
	return setup(t, &env{t: t, url: node.URLs, pid: node.Nodes[0].PID(), js: js}, orgs)
}

// setup onboards orgs tenants, each with a role, a bucket and a verified
// integration, and starts the fakes.
func setup(t *testing.T, e *env, orgs int) *env {
	reg, err := registry.Open(context.Background(), e.js, registry.Config{})
	if err != nil {
		t.Fatal(err)
	}
	e.reg = reg
	if e.jobs, err = jobs.Open(context.Background(), e.js, nil); err != nil {
		t.Fatal(err)
	}
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
		nc, err := nats.Connect(e.url)
		if err != nil {
			e.t.Fatal(err)
		}
		js, _ := jetstream.New(nc)
		broker, err := creds.New(creds.Config{STS: e.sts.Client(), Rate: rate.Limit(stsRate), Burst: max(1, stsRate/10)})
		if err != nil {
			e.t.Fatal(err)
		}
		metrics := prometheus.NewRegistry()
		e.regs = append(e.regs, metrics)
		cfg := worker.Config{JS: js, Registry: e.reg, Broker: broker, AWS: e.s3.Config(), S3PathStyle: true, Name: fmt.Sprintf("sim-%d", i), Registerer: metrics,
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

// submit starts a directory job as the API does (jobs.Store.Submit).
func (e *env) submit(tn *tenant, id, prefix string) {
	e.t.Helper()
	job := &schema.Job{JobID: id, Org: tn.org.ID, Collection: "docs", IntegrationID: tn.in.ID, Kind: schema.JobDirectory, Bucket: tn.bucket,
		Prefix: prefix, Region: "us-east-1", CreatedAt: time.Now()}
	if _, err := e.jobs.Submit(context.Background(), job); err != nil {
		e.t.Fatal(err)
	}
}

// wait follows the job records (a KV watch, not polling: a thousand jobs
// polled every few milliseconds would be the load) until every one of ids
// is final; it returns when each ended.
func (e *env) wait(ids []string, timeout time.Duration) map[string]time.Time {
	e.t.Helper()
	return e.until(ids, func(st *schema.JobStatus) bool {
		if st.Final() && st.Status != schema.JobStatusCompleted {
			e.t.Fatalf("job %s ended %s: %+v", st.JobID, st.Status, st.Error)
		}
		return st.Final()
	}, timeout)
}

// until follows the job records until reached holds for each of ids; it
// returns when each first did.
func (e *env) until(ids []string, reached func(*schema.JobStatus) bool, timeout time.Duration) map[string]time.Time {
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
			e.t.Logf("%d of %d jobs there", len(done), len(ids))
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
			e.t.Fatalf("%d of %d jobs there after %s", len(done), len(ids), timeout)
		case entry := <-w.Updates():
			if entry == nil || !want[entry.Key()] {
				continue
			}
			if _, ok := done[entry.Key()]; ok {
				continue
			}
			var st schema.JobStatus
			_ = json.Unmarshal(entry.Value(), &st)
			if reached(&st) {
				done[entry.Key()] = time.Now()
			}
		}
	}
	return done
}

// firstSeen records, as messages are published on subjects, when each job
// was first named by one that seen accepts (it returns the job's ID, or "").
// Read the times with at after the work is done; stop ends the
// subscriptions.
func (e *env) firstSeen(subjects []string, seen func(data []byte) string) (at func(id string) time.Time, stop func()) {
	e.t.Helper()
	nc, err := nats.Connect(e.url)
	if err != nil {
		e.t.Fatal(err)
	}
	var mu sync.Mutex
	times := map[string]time.Time{}
	for _, subj := range subjects {
		if _, err := nc.Subscribe(subj, func(m *nats.Msg) {
			id := seen(m.Data)
			if id == "" {
				return
			}
			mu.Lock()
			if _, ok := times[id]; !ok {
				times[id] = time.Now()
			}
			mu.Unlock()
		}); err != nil {
			e.t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		e.t.Fatal(err)
	}
	return func(id string) time.Time {
		mu.Lock()
		defer mu.Unlock()
		return times[id]
	}, nc.Close
}

// finals records when each of ids' job record is first written final, as
// the write is made (a subscription to the record's KV subject: a KV watch
// of every job's record lags by seconds under load). Call it before
// submitting.
func (e *env) finals(ids []string) (at func(id string) time.Time, stop func()) {
	var subjects []string
	for _, id := range ids {
		subjects = append(subjects, "$KV."+schema.BucketJobs+"."+id)
	}
	return e.firstSeen(subjects, func(data []byte) string {
		var st schema.JobStatus
		if json.Unmarshal(data, &st) != nil || !st.Final() {
			return ""
		}
		return st.JobID
	})
}

// jobIDOf is the job an event names.
func jobIDOf(data []byte) string {
	var ev struct {
		JobID string `json:"job_id"`
	}
	_ = json.Unmarshal(data, &ev)
	return ev.JobID
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
		var ids []string
		for i := range e.orgs {
			ids = append(ids, fmt.Sprintf("load_%d", i))
		}
		finalAt, stopFinals := e.finals(ids)
		start := time.Now()
		for i, tn := range e.orgs {
			e.submit(tn, ids[i], "load/")
		}
		e.wait(ids, 20*time.Minute)
		var end time.Time
		for _, id := range ids {
			if at := finalAt(id); at.After(end) {
				end = at
			}
		}
		stopFinals()
		rate := float64(tenants*perTenant) / end.Sub(start).Seconds()
		stop()
		if n == 1 {
			base = rate
		}
		logf(t, "throughput: %d workers × 2 slots, %d tenants × %d objects: %.0f objects/s, efficiency %.2f (ideal %d × %.0f)",
			n, tenants, perTenant, rate, rate/(float64(n)*base), n, base)
	}
}

// TestOrgsWithWork: orgs with work queued — each a job of a few dozen
// objects, one of them a 100,000-object backlog — on 4 workers; then probe
// tenants, new ones, submit a one-file job each, a few per second, while the
// others still have work. Reports the consumers made, nats-server's memory
// (its own process), claim round trips and the probes' job latency.
func TestOrgsWithWork(t *testing.T) {
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
	perOrg, probes := size(20, 5), size(30, 5)
	for _, orgs := range counts {
		if orgs == 0 {
			continue
		}
		e := newProcessEnv(t, 1+orgs+probes)
		big, busy, probe := e.orgs[0], e.orgs[1:1+orgs], e.orgs[1+orgs:]
		e.put(big, "bulk/", backlog)
		for _, tn := range busy {
			e.put(tn, "work/", perOrg)
		}
		for _, tn := range probe {
			e.put(tn, "probe/", 1)
		}
		stop := e.fleet(4, 1000, nil)
		start, serverCPU := time.Now(), pidCPU(e.pid)
		e.submit(big, "bulk", "bulk/")
		var ids []string
		for i, tn := range busy {
			id := fmt.Sprintf("work_%d", i)
			e.submit(tn, id, "work/")
			ids = append(ids, id)
		}
		planned := func(st *schema.JobStatus) bool { return st.Planned() }
		e.until(append(ids, "bulk"), planned, 20*time.Minute)
		plannedIn := time.Since(start)

		// The probes, one every 300 ms, followed together; their events are
		// watched as they are published, to split the latency into planning,
		// indexing and the tracker's fold.
		var jobSubjects, objectSubjects []string
		for _, tn := range probe {
			jobSubjects = append(jobSubjects, schema.JobEventSubject(tn.org.ID, "docs"))
			objectSubjects = append(objectSubjects, schema.ObjectEventSubject(tn.org.ID, "docs"))
		}
		plannedAt, stopPlanned := e.firstSeen(jobSubjects, jobIDOf)
		indexedAt, stopIndexed := e.firstSeen(objectSubjects, jobIDOf)
		var probeIDs []string
		for i := range probe {
			probeIDs = append(probeIDs, fmt.Sprintf("probe_%d", i))
		}
		finalAt, stopFinals := e.finals(probeIDs)
		submitted := map[string]time.Time{}
		for i, tn := range probe {
			id := probeIDs[i]
			submitted[id] = time.Now()
			e.submit(tn, id, "probe/")
			time.Sleep(300 * time.Millisecond)
		}
		var lat, planning, indexing, folding []time.Duration
		e.wait(probeIDs, 10*time.Minute)
		for _, id := range probeIDs {
			final, planned, indexed := finalAt(id), plannedAt(id), indexedAt(id)
			lat = append(lat, final.Sub(submitted[id]))
			planning = append(planning, planned.Sub(submitted[id]))
			indexing = append(indexing, indexed.Sub(planned))
			folding = append(folding, final.Sub(indexed))
		}
		stopFinals()
		stopPlanned()
		stopIndexed()
		for _, d := range [][]time.Duration{lat, planning, indexing, folding} {
			slices.Sort(d)
		}
		// Were the others still waiting when the probes were done?
		ctx := context.Background()
		st, _ := e.js.Stream(ctx, schema.StreamTasks)
		info, _ := st.Info(ctx, jetstream.WithSubjectFilter(schema.AllTasks))
		stillWaiting := map[string]bool{}
		for subj := range info.State.Subjects {
			if org, ok := schema.OrgOfTaskSubject(subj); ok {
				stillWaiting[org] = true
			}
		}
		consumers := 0
		for _, stream := range []string{schema.StreamJobs, schema.StreamTasks} {
			s, _ := e.js.Stream(ctx, stream)
			info, _ := s.Info(ctx)
			consumers += info.State.Consumers
		}
		claimP50, claimP99 := e.claimLatency("task")
		serverRSS, serverBusy := pidRSSMiB(e.pid), (pidCPU(e.pid)-serverCPU).Seconds()/time.Since(start).Seconds()
		stop()
		logf(t, "%d orgs with work (%d objects each; one with a %d-object backlog) on 4 workers: all planned in %s; "+
			"probes (new tenants, a 1-object job each, %d of them 300 ms apart, while %d orgs still had tasks waiting): job latency p50 %s / p99 %s / max %s "+
			"(p50s: submit→planned %s, planned→indexed %s, indexed→job record final %s); "+
			"%d consumers; nats-server RSS %d MiB, %.2f cores busy; task claim round trip p50 %s / p99 %s; RSS of the in-process fleet and fakes %d MiB",
			orgs, perOrg, backlog, plannedIn.Round(100*time.Millisecond), probes, len(stillWaiting), pct(lat, 0.5), pct(lat, 0.99), pct(lat, 1),
			pct(planning, 0.5), pct(indexing, 0.5), pct(folding, 0.5),
			consumers, serverRSS, serverBusy, claimP50, claimP99, rssMiB())
	}
}

// histograms are the workers' series of histogram name, of stage's only
// when stage is set.
func (e *env) histograms(name, stage string) []*dto.Histogram {
	var hs []*dto.Histogram
	for _, reg := range e.regs {
		mfs, err := reg.Gather()
		if err != nil {
			e.t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() != name {
				continue
			}
			for _, m := range mf.GetMetric() {
				if stage == "" || slices.ContainsFunc(m.GetLabel(), func(l *dto.LabelPair) bool { return l.GetName() == "stage" && l.GetValue() == stage }) {
					hs = append(hs, m.GetHistogram())
				}
			}
		}
	}
	return hs
}

// meanDuration is the mean of histogram name's observations across the
// workers, of stage's series when stage is set.
func (e *env) meanDuration(name, stage string) time.Duration {
	var sum float64
	var n uint64
	for _, h := range e.histograms(name, stage) {
		sum, n = sum+h.GetSampleSum(), n+h.GetSampleCount()
	}
	if n == 0 {
		return 0
	}
	return time.Duration(sum / float64(n) * float64(time.Second)).Round(100 * time.Microsecond)
}

// claimLatency estimates the p50 and p99 of the workers' claim round trips
// of stage from their histograms (linear within a bucket).
func (e *env) claimLatency(stage string) (p50, p99 time.Duration) {
	var bounds []float64
	var counts []uint64
	for _, h := range e.histograms("stevedore_claim_duration_seconds", stage) {
		for i, b := range h.GetBucket() {
			if len(bounds) <= i {
				bounds, counts = append(bounds, b.GetUpperBound()), append(counts, 0)
			}
			counts[i] += b.GetCumulativeCount()
		}
	}
	q := func(q float64) time.Duration {
		if len(counts) == 0 || counts[len(counts)-1] == 0 {
			return 0
		}
		rank := q * float64(counts[len(counts)-1])
		lower, below := 0.0, 0.0
		for i, c := range counts {
			if float64(c) >= rank {
				frac := (rank - below) / max(1, float64(c)-below)
				return time.Duration((lower + frac*(bounds[i]-lower)) * float64(time.Second)).Round(10 * time.Microsecond)
			}
			lower, below = bounds[i], float64(c)
		}
		return time.Duration(lower * float64(time.Second))
	}
	return q(0.5), q(0.99)
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
		finalAt, stopFinals := e.finals([]string{"b_urgent"})
		start := time.Now()
		e.submit(b, "b_urgent", "urgent/")
		e.wait([]string{"b_urgent"}, 10*time.Minute)
		took := finalAt("b_urgent").Sub(start)
		stopFinals()
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
	nc, _ := nats.Connect(e.url)
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

func rssMiB() int64 { return pidRSSMiB(os.Getpid()) }

// cpu is the CPU time this process and, when it is its own process,
// nats-server have used.
func (e *env) cpu() time.Duration {
	d := pidCPU(os.Getpid())
	if e.pid != 0 {
		d += pidCPU(e.pid)
	}
	return d
}

// pidCPU is the CPU time pid has used (user and system).
func pidCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command (which may hold spaces): utime is the 12th, stime the 13th.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	var utime, stime int64
	fmt.Sscan(f[11], &utime)
	fmt.Sscan(f[12], &stime)
	return time.Duration(utime+stime) * (time.Second / 100) // USER_HZ
}

func pidRSSMiB(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
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
