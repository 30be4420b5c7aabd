// Command bench is `make bench`: on one MinIO and one `stevedore dev` (the
// same processes the demo runs), it measures the raw stages a pipeline is
// made of — S3 GET at the pipeline's concurrency, the tokenizer, JetStream
// publishes of the messages an object produces — and then the pipeline end
// to end through the API for several shapes of objects. Each pipeline figure
// is compared with the ceiling the raw stages allow on this machine in the
// same run (cores ÷ the CPU one object costs in the raw stages), so a noisy
// or slower machine does not hide or fake a regression. It prints a table,
// writes bench/results/<time>-<rev>.json and compares with the newest
// earlier result. It is a measurement, not a test: nothing here fails on a
// number.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"golang.org/x/sync/errgroup"

	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/scripts/stack"
	"github.com/stevedore-dev/stevedore/worker/chunk"
	"github.com/stevedore-dev/stevedore/worker/creds"
	"github.com/stevedore-dev/stevedore/worker/extract/extracttest"
	"github.com/stevedore-dev/stevedore/worker/token"
)

const roleARN = "arn:aws:iam::123456789012:role/stevedore-bench"

// shape is one kind of load: count objects of size bytes under prefix.
type shape struct {
	Name  string `json:"name"`
	Count int    `json:"count"`
	Size  int    `json:"size"`
	Docs  bool   `json:"docs,omitempty"` // PDFs of prose instead of text
}

// Raw is what one object costs in the raw stages, for the 4 KiB shape.
type Raw struct {
	GetPerSec float64 `json:"s3_get_per_s"`
	GetCPUms  float64 `json:"s3_get_cpu_ms_per_object"` // client and MinIO, MinIO's root user
	// The same GETs with a tenant's scoped session, as the pipeline makes
	// them: the ceiling's S3 stage.
	GetSessionPerSec float64 `json:"s3_get_session_per_s"`
	GetSessionCPUms  float64 `json:"s3_get_session_cpu_ms_per_object"`
	TokenizerMBps    float64 `json:"tokenizer_mb_per_s_per_core"`
	TokenizeCPUms    float64 `json:"tokenize_cpu_ms_per_object"`
	PublishPerSec    float64 `json:"publish_msgs_per_s"`
	PublishCPUms     float64 `json:"publish_cpu_ms_per_object"` // client and server, 3 messages an object
	CeilingPerSec    float64 `json:"ceiling_objects_per_s"`     // cores ÷ the sum of the CPU per object
	CeilingCPUms     float64 `json:"ceiling_cpu_ms_per_object"`
	// The ceiling as first defined, with the root user's GET (cheaper for
	// MinIO than a session's): kept so runs before and after compare.
	RootCeilingPerSec float64 `json:"root_ceiling_objects_per_s"`
	Cores             int     `json:"cores"`
	ChunkBytes        int     `json:"chunk_bytes"`
	ObjectsPerTest    int     `json:"objects"`
}

// Ceiling is what one object of a text shape costs in the raw stages — a
// GET of it with the tenant's session, counting its tokens, publishing the
// chunks the real splitter makes of it with its commit and event — and the
// throughput that leaves on this machine's cores.
type Ceiling struct {
	Shape         string  `json:"shape"`
	GetPerSec     float64 `json:"s3_get_session_per_s"`
	GetCPUms      float64 `json:"s3_get_session_cpu_ms_per_object"`
	TokenizeCPUms float64 `json:"tokenize_cpu_ms_per_object"`
	Chunks        int     `json:"chunks_per_object"`
	PublishCPUms  float64 `json:"publish_cpu_ms_per_object"` // its chunks, commit and event, client + server
	// PublishSyscalls are the nats-server nodes' read and write system
	// calls per object of that publish (fleet), to set beside the
	// pipeline's (Pipeline.NATSSyscalls).
	PublishSyscalls  float64 `json:"publish_nats_syscalls_per_object,omitempty"`
	PublishRouteMsgs float64 `json:"publish_nats_route_msgs_per_object,omitempty"`
	CPUms            float64 `json:"cpu_ms_per_object"`
	PerSec           float64 `json:"objects_per_s"`
	// The ceiling is measured right before and right after the shape's
	// pipeline; CPUms and the stages are the means.
	CPUmsBefore float64 `json:"cpu_ms_per_object_before"`
	CPUmsAfter  float64 `json:"cpu_ms_per_object_after"`
}

// Pipeline is one shape end to end.
type Pipeline struct {
	Shape        shape   `json:"shape"`
	Seconds      float64 `json:"seconds"`
	ObjectsPerS  float64 `json:"objects_per_s"`
	MBPerS       float64 `json:"mb_per_s"`
	ChunksPerS   float64 `json:"chunks_per_s"`
	TokensPerS   float64 `json:"tokens_per_s"`
	StevedoreCPU float64 `json:"stevedore_cpu_ms_per_object"`      // dev: includes the embedded nats-server; fleet: producer + worker
	NATSCPU      float64 `json:"nats_cpu_ms_per_object,omitempty"` // fleet: the nats-server process
	MinIOCPU     float64 `json:"minio_cpu_ms_per_object"`
	// NATSSyscalls and WorkerSyscalls are the read and write system calls
	// per object of the nats-server nodes (fleet) and of the worker: counts,
	// not times, so this VM's drifting speed does not move them; the
	// servers' largest cost is a system call per small message.
	NATSSyscalls   float64 `json:"nats_syscalls_per_object,omitempty"`
	WorkerSyscalls float64 `json:"worker_syscalls_per_object,omitempty"`
	// RouteMsgs are the messages the nodes sent each other per object (R3:
	// raft's appends and their answers, and what a node forwards to the
	// leader of a stream or consumer).
	RouteMsgs  float64 `json:"nats_route_msgs_per_object,omitempty"`
	STSPer1000 float64 `json:"sts_calls_per_1000_objects"`
	PeakRSSMiB float64 `json:"peak_rss_mib"`
	TaskP50ms  float64 `json:"task_p50_ms"`
	TaskP99ms  float64 `json:"task_p99_ms"`
	// Ratio is objects/s ÷ the shape's ceiling (text shapes).
	Ratio float64 `json:"ratio_to_shape_ceiling,omitempty"`
	// The 4 KiB shape against the first definition of the ceiling (Raw:
	// one chunk an object), and with the root user's GET: kept so runs
	// before and after compare.
	RatioFirst float64 `json:"ratio_to_ceiling,omitempty"`
	RatioRoot  float64 `json:"ratio_to_root_ceiling,omitempty"`
	CoresBusy  float64 `json:"cores_busy"`
}

// Result is one run.
type Result struct {
	At        time.Time  `json:"at"`
	Revision  string     `json:"revision"`
	GoVersion string     `json:"go"`
	Raw       Raw        `json:"raw"`
	Ceilings  []Ceiling  `json:"ceilings,omitempty"`
	Pipelines []Pipeline `json:"pipelines"`
	Smoke     bool       `json:"smoke,omitempty"`
	// Fleet: nats-server, `stevedore producer` and `stevedore worker` as
	// separate processes (production's shape) instead of `stevedore dev`
	// with its embedded server; stevedore's CPU is then its own.
	Fleet bool `json:"fleet,omitempty"`
	// Replicas: with Fleet, 3 is a 3-node NATS cluster with every stream
	// (and the raw stages' scratch stream) at R3; 0 or 1 is one node, R1.
	Replicas int `json:"replicas,omitempty"`
}

// procs are the processes whose CPU the bench reads.
type procs struct {
	stevedore []int // dev, or producer and worker
	servers   []int // the processes storing JetStream messages: dev, or the nats-server nodes
	worker    int   // the process doing the tasks (its RSS is reported)
	// serverProfiles and serverMonitors are the nats-server nodes' pprof
	// and monitoring endpoints (fleet only: dev serves its embedded
	// server's profile as its own).
	serverProfiles, serverMonitors []string
}

func main() {
	smoke := flag.Bool("smoke", false, "200 objects of 4 KiB only, no result file (CI keeps the harness working with it)")
	shapesFlag := flag.String("shapes", "4k:10000,64k:3000,32m:10,pdf:40", "shapes: size:count, size in k or m, or pdf:count")
	out := flag.String("out", "bench/results", "directory for the JSON result (relative to the repository)")
	profile := flag.Bool("profile", false, "capture CPU, block and mutex profiles of stevedore during the first shape (in .stevedore/bench/)")
	workers := flag.String("workers", "2", "workers in stevedore dev (or in the worker process with -fleet)")
	fleet := flag.Bool("fleet", false, "run nats-server, `stevedore producer` and `stevedore worker` as separate processes instead of `stevedore dev`")
	more := flag.String("worker-args", "", "more flags for stevedore dev (or the worker process with -fleet), e.g. \"--task-concurrency 16\"")
	replicas := flag.Int("replicas", 1, "with -fleet: 3 runs a 3-node NATS cluster with every stream at R3")
	flag.Parse()
	if *replicas != 1 && (*replicas != 3 || !*fleet) {
		fmt.Fprintln(os.Stderr, "bench: -replicas is 1, or 3 with -fleet")
		os.Exit(2)
	}
	args := append([]string{"--workers", *workers}, strings.Fields(*more)...)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *smoke, *shapesFlag, *out, *profile, args, *fleet, *replicas); err != nil {
		fmt.Fprintln(os.Stderr, "bench failed:", err)
		os.Exit(1)
	}
}

func parseShapes(spec string) ([]shape, error) {
	var out []shape
	for _, part := range strings.Split(spec, ",") {
		size, count, ok := strings.Cut(part, ":")
		n, err := strconv.Atoi(count)
		if !ok || err != nil || n <= 0 {
			return nil, fmt.Errorf("shape %q: want size:count", part)
		}
		if size == "pdf" {
			out = append(out, shape{Name: fmt.Sprintf("%d × PDF (40 pages)", n), Count: n, Docs: true})
			continue
		}
		mult := 1
		switch {
		case strings.HasSuffix(size, "k"):
			mult, size = 1<<10, strings.TrimSuffix(size, "k")
		case strings.HasSuffix(size, "m"):
			mult, size = 1<<20, strings.TrimSuffix(size, "m")
		}
		v, err := strconv.Atoi(size)
		if err != nil || v <= 0 {
			return nil, fmt.Errorf("shape %q: bad size", part)
		}
		out = append(out, shape{Name: fmt.Sprintf("%d × %s", n, human(v*mult)), Count: n, Size: v * mult})
	}
	return out, nil
}

func human(b int) string {
	switch {
	case b >= 1<<20:
		return fmt.Sprintf("%d MiB", b>>20)
	case b >= 1<<10:
		return fmt.Sprintf("%d KiB", b>>10)
	}
	return fmt.Sprintf("%d B", b)
}

func run(ctx context.Context, smoke bool, shapeSpec, out string, profile bool, workerArgs []string, fleet bool, replicas int) error {
	shapes, err := parseShapes(shapeSpec)
	if err != nil {
		return err
	}
	if smoke {
		shapes = []shape{{Name: "200 × 4 KiB (smoke)", Count: 200, Size: 4 << 10}}
	}
	root, err := stack.RepoRoot()
	if err != nil {
		return err
	}
	dir := filepath.Join(root, ".stevedore", "bench")
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	logf := func(f string, a ...any) { fmt.Fprintf(os.Stderr, "==> "+f+"\n", a...) }
	var s *stack.Stack
	var ps procs
	if fleet {
		var stop func()
		if s, ps, stop, err = startFleet(ctx, dir, logf, workerArgs, replicas); err != nil {
			return err
		}
		defer stop()
	} else {
		if s, err = stack.Start(ctx, dir, logf, stack.WithDevArgs(append(workerArgs, "--pprof", "--log-level", "warn")...)); err != nil {
			return err
		}
		defer s.Stop()
		ps = procs{stevedore: []int{s.DevPID()}, servers: []int{s.DevPID()}, worker: s.DevPID()}
	}
	org, _, err := s.Onboard(ctx, "Bench", roleARN, "demo-docs")
	if err != nil {
		return err
	}
	minio, err := s.MinIOPID()
	if err != nil {
		return err
	}
	client := s.RootS3()
	res := Result{At: time.Now().UTC(), Revision: revision(root), GoVersion: runtime.Version(), Smoke: smoke, Fleet: fleet}
	if replicas > 1 {
		res.Replicas = replicas
	}
	logf("uploading %d shapes", len(shapes))
	for i, sh := range shapes {
		if err := upload(ctx, client, fmt.Sprintf("bench/%d/", i), sh); err != nil {
			return err
		}
	}
	logf("raw stages")
	// The raw stages read the first text shape's objects (none: PDFs only,
	// no ceiling).
	if first := slices.IndexFunc(shapes, func(sh shape) bool { return !sh.Docs }); first >= 0 {
		if res.Raw, err = raw(ctx, s, ps, org, client, minio, fmt.Sprintf("bench/%d/", first), shapes[first]); err != nil {
			return err
		}
	}
	for i, sh := range shapes {
		logf("pipeline: %s", sh.Name)
		// A text shape's ceiling is measured right before and right after
		// its pipeline, and the two averaged: this VM's speed drifts within
		// minutes, and a ceiling from another minute than the pipeline's
		// moved the ratio by ±10 points.
		var before Ceiling
		prefix := fmt.Sprintf("bench/%d/", i)
		if !sh.Docs {
			if before, err = ceiling(ctx, s, ps, org, minio, prefix, sh); err != nil {
				return err
			}
		}
		var stopProfile func() error
		if profile && i == 0 {
			stopProfile = startProfiles(s, ps, dir, logf)
		}
		p, err := pipeline(ctx, s, ps, org, minio, prefix, sh, i)
		if err != nil {
			return err
		}
		if stopProfile != nil {
			if err := stopProfile(); err != nil {
				return err
			}
		}
		if !sh.Docs {
			after, err := ceiling(ctx, s, ps, org, minio, prefix, sh)
			if err != nil {
				return err
			}
			c := mean(before, after)
			res.Ceilings = append(res.Ceilings, c)
			p.Ratio = p.ObjectsPerS / c.PerSec
		}
		if !sh.Docs && sh.Size == 4<<10 && res.Raw.CeilingPerSec > 0 {
			p.RatioFirst = p.ObjectsPerS / res.Raw.CeilingPerSec
			p.RatioRoot = p.ObjectsPerS / res.Raw.RootCeilingPerSec
		}
		res.Pipelines = append(res.Pipelines, p)
	}
	if !filepath.IsAbs(out) {
		out = filepath.Join(root, out)
	}
	prev := previous(out, fleet, res.Replicas)
	report(os.Stdout, res, prev)
	if smoke {
		return nil
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	name := filepath.Join(out, res.At.Format("20060102T150405Z")+"-"+res.Revision+".json")
	data, _ := json.MarshalIndent(res, "", "  ")
	if err := os.WriteFile(name, append(data, '\n'), 0o644); err != nil {
		return err
	}
	logf("wrote %s", name)
	return nil
}

// startFleet starts MinIO, one nats-server (or a 3-node cluster, with
// replicas 3), `stevedore producer` and `stevedore worker --workers n` as
// separate processes, as production runs them, and points s at the
// producer's API and the worker's metrics.
func startFleet(ctx context.Context, dir string, logf func(string, ...any), workerArgs []string, replicas int) (*stack.Stack, procs, func(), error) {
	s, err := stack.Start(ctx, dir, logf, stack.WithoutDev())
	if err != nil {
		return nil, procs{}, nil, err
	}
	var running []*stack.Proc
	stop := func() {
		for i := len(running) - 1; i >= 0; i-- {
			running[i].Stop()
		}
		s.Stop()
	}
	fail := func(err error) (*stack.Stack, procs, func(), error) { stop(); return nil, procs{}, nil, err }
	natsBin, err := stack.NATSServer(ctx, s.Root)
	if err != nil {
		return fail(err)
	}
	var node *stack.Cluster
	if replicas == 3 {
		node, err = stack.StartCluster(ctx, dir, natsBin, 3)
	} else {
		node, err = stack.StartNATS(ctx, dir, natsBin)
	}
	if node != nil {
		running = append(running, node.Nodes...)
	}
	if err != nil {
		return fail(err)
	}
	s.NATSURL, s.Replicas = node.URLs, replicas
	env := append(s.Env, "STEVEDORE_NATS_URL="+node.URLs, "STEVEDORE_LOG_LEVEL=warn", fmt.Sprintf("STEVEDORE_REPLICAS=%d", replicas))
	var ports [3]int
	for i := range ports {
		if ports[i], err = stack.FreePort(); err != nil {
			return fail(err)
		}
	}
	producer, err := stack.StartProc("producer", dir, s.Bin, env, "producer", "--listen", fmt.Sprintf("127.0.0.1:%d", ports[0]),
		"--metrics-listen", fmt.Sprintf("127.0.0.1:%d", ports[1]))
	if err != nil {
		return fail(err)
	}
	running = append(running, producer)
	if err := stack.WaitOK(fmt.Sprintf("http://127.0.0.1:%d/readyz", ports[1]), time.Minute); err != nil {
		return fail(err)
	}
	worker, err := stack.StartProc("worker", dir, s.Bin, env, append(append([]string{"worker"}, workerArgs...), "--pprof",
		"--metrics-listen", fmt.Sprintf("127.0.0.1:%d", ports[2]))...)
	if err != nil {
		return fail(err)
	}
	running = append(running, worker)
	s.API, s.Metric = fmt.Sprintf("http://127.0.0.1:%d", ports[0]), fmt.Sprintf("http://127.0.0.1:%d", ports[2])
	if err := stack.WaitOK(s.Metric+"/readyz", time.Minute); err != nil {
		return fail(err)
	}
	var servers []int
	for _, n := range node.Nodes {
		servers = append(servers, n.PID())
	}
	logf("fleet: nats-server %v (R%d), producer (pid %d), worker %s (pid %d)", servers, replicas, producer.PID(), strings.Join(workerArgs, " "), worker.PID())
	return s, procs{stevedore: []int{producer.PID(), worker.PID()}, servers: servers, worker: worker.PID(), serverProfiles: node.Profiles, serverMonitors: node.Monitors}, stop, nil
}

// upload puts sh's objects under prefix.
func upload(ctx context.Context, client *s3.Client, prefix string, sh shape) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(16)
	for i := 0; i < sh.Count; i++ {
		g.Go(func() error {
			var body []byte
			key := fmt.Sprintf("%sobj-%06d.txt", prefix, i)
			if sh.Docs {
				key = fmt.Sprintf("%sdoc-%06d.pdf", prefix, i)
				body = extracttest.PDF(40, func(p int) []string { return extracttest.Prose(i*40+p, 50) })
			} else {
				body = prose(i, sh.Size)
			}
			_, err := client.PutObject(gctx, &s3.PutObjectInput{Bucket: aws.String("demo-docs"), Key: aws.String(key), Body: bytes.NewReader(body)})
			return err
		})
	}
	return g.Wait()
}

// prose is size bytes of English-like text, different for each seed.
func prose(seed, size int) []byte {
	var b bytes.Buffer
	for l := 0; b.Len() < size; l++ {
		for _, line := range extracttest.Prose(seed+l, 8) {
			b.WriteString(line)
			b.WriteString(". ")
		}
		b.WriteString("\n\n")
	}
	return b.Bytes()[:size]
}

// cpu returns the user+system CPU time of processes, summed.
func cpu(pids ...int) time.Duration {
	var d time.Duration
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		d += time.Duration(ut+st) * time.Second / 100 // USER_HZ
	}
	return d
}

// serverCounts are the nats-server nodes' read and write system calls and
// the messages they sent each other: a snapshot (counts), or per object of
// a measurement (since).
type serverCounts struct{ syscalls, routeMsgs float64 }

// serverCounts snapshots the nodes' counts; zero in dev, whose server is
// stevedore's own process (its system calls are the worker's).
func (ps procs) serverCounts() serverCounts {
	if len(ps.serverMonitors) == 0 {
		return serverCounts{}
	}
	return serverCounts{float64(syscalls(ps.servers...)), float64(routeMsgs(ps.serverMonitors))}
}

// since is the counts from before to c, per object of n.
func (c serverCounts) since(before serverCounts, n int) serverCounts {
	return serverCounts{(c.syscalls - before.syscalls) / float64(n), (c.routeMsgs - before.routeMsgs) / float64(n)}
}

// routeMsgs returns the messages the nodes behind monitors sent on their
// routes (routez out_msgs), summed; 0 without monitors.
func routeMsgs(monitors []string) int64 {
	var n int64
	for _, url := range monitors {
		resp, err := http.Get(url + "/routez")
		if err != nil {
			continue
		}
		var rz struct {
			Routes []struct {
				OutMsgs int64 `json:"out_msgs"`
			} `json:"routes"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&rz)
		resp.Body.Close()
		for _, r := range rz.Routes {
			n += r.OutMsgs
		}
	}
	return n
}

// syscalls returns the read and write system calls (syscr + syscw of
// /proc/PID/io) of processes, summed.
func syscalls(pids ...int) int64 {
	var n int64
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			k, v, ok := strings.Cut(line, ": ")
			if ok && (k == "syscr" || k == "syscw") {
				c, _ := strconv.ParseInt(v, 10, 64)
				n += c
			}
		}
	}
	return n
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func ms(d time.Duration, n int) float64 { return float64(d) / float64(time.Millisecond) / float64(n) }

// raw measures the stages one 4 KiB object goes through, on the same
// processes the pipeline uses.
// getAll GETs every key at the task concurrency and returns GETs per
// second and the CPU per GET (this process and MinIO).
func getAll(ctx context.Context, client *s3.Client, minio int, keys []string) (perSec, cpuMs float64, err error) {
	c0, m0, t0 := selfCPU(), cpu(minio), time.Now()
	var next atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	for w := 0; w < 8; w++ {
		g.Go(func() error {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(keys) {
					return nil
				}
				o, err := client.GetObject(gctx, &s3.GetObjectInput{Bucket: aws.String("demo-docs"), Key: aws.String(keys[i])})
				if err != nil {
					return err
				}
				_, err = io.Copy(io.Discard, o.Body)
				o.Body.Close()
				if err != nil {
					return err
				}
			}
		})
	}
	if err := g.Wait(); err != nil {
		return 0, 0, err
	}
	return float64(len(keys)) / time.Since(t0).Seconds(), ms(selfCPU()-c0+cpu(minio)-m0, len(keys)), nil
}

// sessionS3 is an S3 client with the session the pipeline reads through:
// stevedore's identity assumes the tenant's role with the session policy
// scoped to bucket/prefix (creds.SessionPolicy).
func sessionS3(ctx context.Context, s *stack.Stack, org *stack.Org, bucket, prefix string) (*s3.Client, error) {
	env := map[string]string{}
	for _, kv := range s.Env {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	policy, err := creds.SessionPolicy(bucket, prefix)
	if err != nil {
		return nil, err
	}
	stsc := sts.New(sts.Options{Region: "us-east-1", BaseEndpoint: aws.String(env["AWS_ENDPOINT_URL_STS"]),
		Credentials: credentials.NewStaticCredentialsProvider(env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"], "")})
	out, err := stsc.AssumeRole(ctx, &sts.AssumeRoleInput{RoleArn: aws.String(roleARN), RoleSessionName: aws.String("stevedore-bench-raw"),
		ExternalId: aws.String(org.ExternalID), Policy: aws.String(policy)})
	if err != nil {
		return nil, fmt.Errorf("assume role for the raw GETs: %w", err)
	}
	c := out.Credentials
	return s3.New(s3.Options{Region: "us-east-1", BaseEndpoint: aws.String(env["AWS_ENDPOINT_URL_S3"]), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(aws.ToString(c.AccessKeyId), aws.ToString(c.SecretAccessKey), aws.ToString(c.SessionToken))}), nil
}

func raw(ctx context.Context, s *stack.Stack, ps procs, org *stack.Org, client *s3.Client, minio int, prefix string, sh shape) (Raw, error) {
	r := Raw{Cores: runtime.NumCPU(), ObjectsPerTest: sh.Count}
	// S3 GET of every object of the first shape, at the task concurrency.
	keys := objectKeys(prefix, sh.Count)
	var err error
	if r.GetPerSec, r.GetCPUms, err = getAll(ctx, client, minio, keys); err != nil {
		return r, err
	}
	// The same GETs as the pipeline makes them: with a tenant's assumed-role
	// session scoped by its session policy (MinIO then evaluates that policy
	// on every request). The ceiling is computed from these.
	session, err := sessionS3(ctx, s, org, "demo-docs", prefix)
	if err != nil {
		return r, err
	}
	if r.GetSessionPerSec, r.GetSessionCPUms, err = getAll(ctx, session, minio, keys); err != nil {
		return r, err
	}
	// The tokenizer on one core.
	enc, err := token.Get(token.Cl100kBase)
	if err != nil {
		return r, err
	}
	r.TokenizerMBps = tokenizerMBps(enc)
	r.TokenizeCPUms = float64(sh.Size) / (r.TokenizerMBps * 1e6) * 1000
	// JetStream publishes with Msg-Id of what one object produces: a chunk,
	// its commit and its event, to a scratch stream on the same server.
	js, stopStream, err := scratchStream(ctx, s)
	if err != nil {
		return r, err
	}
	defer stopStream()
	chunk := &schema.Chunk{ChunkID: "ch_0", Org: "org_bench", Collection: "c", Bucket: "demo-docs", Key: "k", ETag: "e", Text: string(prose(2, sh.Size)),
		TokenCount: 900, Encoding: token.Cl100kBase, ExtractorVersion: "text/1", ContentType: "text/plain"}
	commit := &schema.Commit{Commit: true, Org: "org_bench", Collection: "c", Bucket: "demo-docs", Key: "k", ETag: "e", ExtractorVersion: "text/1", Chunks: 1, Tokens: 900}
	event := &schema.ObjectEvent{EventID: "ev", JobID: "job_b", Org: "org_bench", Collection: "c", Bucket: "demo-docs", Key: "k", Outcome: schema.OutcomeIndexed, Chunks: 1, Tokens: 900}
	r.ChunkBytes = len(chunk.Text)
	secs, cpuMs, _, err := publishEach(ctx, js, ps, len(keys), func(i int) []schema.Out {
		return []schema.Out{{Subject: "bench.chunks", MsgID: fmt.Sprintf("c%d", i), Msg: chunk},
			{Subject: "bench.chunks", MsgID: fmt.Sprintf("m%d", i), Msg: commit}, {Subject: "bench.events", MsgID: fmt.Sprintf("e%d", i), Msg: event}}
	})
	if err != nil {
		return r, err
	}
	r.PublishPerSec = 3 * float64(len(keys)) / secs
	r.PublishCPUms = cpuMs
	r.CeilingCPUms = r.GetSessionCPUms + r.TokenizeCPUms + r.PublishCPUms
	r.CeilingPerSec = perSec(r.CeilingCPUms)
	r.RootCeilingPerSec = perSec(r.GetCPUms + r.TokenizeCPUms + r.PublishCPUms)
	return r, nil
}

// ceiling measures what one object of sh (a text shape, uploaded under
// prefix) costs in the raw stages: GETs of its objects with the tenant's
// session at the task concurrency, the tokenizer on one core (measured
// here: the machine's speed drifts), and JetStream publishes of the chunks
// the worker's splitter makes of its text (default chunk size) with a commit
// and an event, 8 objects at a time.
func ceiling(ctx context.Context, s *stack.Stack, ps procs, org *stack.Org, minio int, prefix string, sh shape) (Ceiling, error) {
	c := Ceiling{Shape: sh.Name}
	keys := objectKeys(prefix, sh.Count)
	session, err := sessionS3(ctx, s, org, "demo-docs", prefix)
	if err != nil {
		return c, err
	}
	if c.GetPerSec, c.GetCPUms, err = getAll(ctx, session, minio, keys); err != nil {
		return c, err
	}
	enc, err := token.Get(token.Cl100kBase)
	if err != nil {
		return c, err
	}
	c.TokenizeCPUms = float64(sh.Size) / (tokenizerMBps(enc) * 1e6) * 1000
	splitter, err := chunk.New(enc, 0)
	if err != nil {
		return c, err
	}
	parts := splitter.Split(string(prose(0, sh.Size)))
	c.Chunks = len(parts)
	// About 20,000 messages, at least one object.
	objects := max(1, min(sh.Count, 20000/(len(parts)+2)))
	js, stop, err := scratchStream(ctx, s)
	if err != nil {
		return c, err
	}
	defer stop()
	msgs := func(i int) []schema.Out {
		out := make([]schema.Out, 0, len(parts)+2)
		for n, p := range parts {
			out = append(out, schema.Out{Subject: "bench.chunks", MsgID: fmt.Sprintf("c%d.%d", i, n), Msg: &schema.Chunk{ChunkID: fmt.Sprintf("ch_%d_%d", i, n),
				Org: "org_bench", Collection: "c", Bucket: "demo-docs", Key: keys[i%len(keys)], ETag: "e", Index: n, ByteOffset: int64(p.Offset), Text: p.Text,
				TokenCount: p.Tokens, Encoding: token.Cl100kBase, ExtractorVersion: "text/1", ContentType: "text/plain"}})
		}
		return append(out, schema.Out{Subject: "bench.chunks", MsgID: fmt.Sprintf("m%d", i), Msg: &schema.Commit{Commit: true, Org: "org_bench", Collection: "c",
			Bucket: "demo-docs", Key: keys[i%len(keys)], ETag: "e", ExtractorVersion: "text/1", Chunks: len(parts)}},
			schema.Out{Subject: "bench.events", MsgID: fmt.Sprintf("e%d", i), Msg: &schema.ObjectEvent{EventID: fmt.Sprintf("ev%d", i), JobID: "job_b", Org: "org_bench",
				Collection: "c", Bucket: "demo-docs", Key: keys[i%len(keys)], Outcome: schema.OutcomeIndexed, Chunks: len(parts)}})
	}
	_, cpuMs, counts, err := publishEach(ctx, js, ps, objects, msgs)
	if err != nil {
		return c, err
	}
	c.PublishCPUms, c.PublishSyscalls, c.PublishRouteMsgs = cpuMs, counts.syscalls, counts.routeMsgs
	c.CPUms = c.GetCPUms + c.TokenizeCPUms + c.PublishCPUms
	c.PerSec = perSec(c.CPUms)
	return c, nil
}

// objectKeys are the keys upload gives a text shape's n objects under prefix.
func objectKeys(prefix string, n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("%sobj-%06d.txt", prefix, i)
	}
	return keys
}

// publishEach publishes msgs(i) for i in [0, n), 8 objects at a time each
// waiting for its acknowledgements as the worker does (64 messages at a
// time), and returns the seconds it took, the CPU per object of this
// process and the server, and the servers' counts per object (fleet).
func publishEach(ctx context.Context, js jetstream.JetStream, ps procs, n int, msgs func(i int) []schema.Out) (secs, cpuMs float64, counts serverCounts, err error) {
	c0, s0, sc0, t0 := selfCPU(), cpu(ps.servers...), ps.serverCounts(), time.Now()
	var next atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	for w := 0; w < 8; w++ {
		g.Go(func() error {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return nil
				}
				// In batches of 64, as the worker publishes a big object's
				// chunks (one call for a 32 MiB object's thousands would pass
				// nats.go's limit of outstanding asynchronous publishes).
				for batch := range slices.Chunk(msgs(i), 64) {
					if _, err := schema.PublishAll(gctx, js, batch); err != nil {
						return err
					}
				}
			}
		})
	}
	if err := g.Wait(); err != nil {
		return 0, 0, counts, err
	}
	return time.Since(t0).Seconds(), ms(selfCPU()-c0+cpu(ps.servers...)-s0, n), ps.serverCounts().since(sc0, n), nil
}

// perSec is the objects per second this machine's cores allow at cpuMs of
// CPU per object.
func perSec(cpuMs float64) float64 { return float64(runtime.NumCPU()) * 1000 / cpuMs }

// mean is the ceiling from two measurements of it: each stage's CPU per
// object averaged, and the spread kept.
func mean(a, b Ceiling) Ceiling {
	c := Ceiling{Shape: a.Shape, Chunks: a.Chunks, GetPerSec: (a.GetPerSec + b.GetPerSec) / 2, GetCPUms: (a.GetCPUms + b.GetCPUms) / 2,
		TokenizeCPUms: (a.TokenizeCPUms + b.TokenizeCPUms) / 2, PublishCPUms: (a.PublishCPUms + b.PublishCPUms) / 2,
		PublishSyscalls: (a.PublishSyscalls + b.PublishSyscalls) / 2, PublishRouteMsgs: (a.PublishRouteMsgs + b.PublishRouteMsgs) / 2, CPUmsBefore: a.CPUms, CPUmsAfter: b.CPUms}
	c.CPUms = c.GetCPUms + c.TokenizeCPUms + c.PublishCPUms
	c.PerSec = perSec(c.CPUms)
	return c
}

// tokenizerMBps is the tokenizer's speed on one core, counting 4 MiB of prose.
func tokenizerMBps(enc *token.Encoding) float64 {
	text := string(prose(1, 4<<20))
	t0 := time.Now()
	for i := 0; i < 3; i++ {
		enc.Count(text)
	}
	return 3 * float64(len(text)) / 1e6 / time.Since(t0).Seconds()
}

// scratchStream makes the BENCH stream the raw publishes go to, on the
// pipeline's server, and returns a function deleting it.
func scratchStream(ctx context.Context, s *stack.Stack) (jetstream.JetStream, func(), error) {
	nc, err := nats.Connect(s.NATSURL)
	if err != nil {
		return nil, nil, err
	}
	js, err := jetstream.New(nc)
	if err == nil {
		_, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "BENCH", Subjects: []string{"bench.>"}, Storage: jetstream.FileStorage,
			Duplicates: 2 * time.Minute, Replicas: max(s.Replicas, 1)})
	}
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return js, func() { _ = js.DeleteStream(context.Background(), "BENCH"); nc.Close() }, nil
}

// pipeline indexes prefix through the API and measures it.
func pipeline(ctx context.Context, s *stack.Stack, ps procs, org *stack.Org, minio int, prefix string, sh shape, i int) (Pipeline, error) {
	p := Pipeline{Shape: sh}
	_ = os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", ps.worker), []byte("5"), 0o644) // reset the peak RSS
	sts0, _ := s.MetricSum("stevedore_sts_assume_total")
	h0, err := taskHistogram(s)
	if err != nil {
		return p, err
	}
	d0, m0, n0, t0 := cpu(ps.stevedore...), cpu(minio), cpu(ps.servers...), time.Now()
	sc0, ws0 := ps.serverCounts(), syscalls(ps.worker)
	body := map[string]any{"bucket_name": "demo-docs", "directory_path": prefix, "skip_existing": false,
		"auth": map[string]string{"type": "assume_role", "role_arn": roleARN, "external_id": org.ExternalID}}
	var job struct {
		JobID string `json:"job_id"`
	}
	if code, err := s.Call(ctx, org, "POST", fmt.Sprintf("/v2/collections/bench%d/index/s3/directory", i), body, &job); err != nil || code != 201 {
		return p, fmt.Errorf("index: HTTP %d: %v", code, err)
	}
	st, err := s.WaitJob(ctx, org, job.JobID, nil)
	if err != nil {
		return p, err
	}
	// From the job's creation to its completion as its record says (the
	// polling's granularity is not part of the pipeline).
	secs := time.Since(t0).Seconds()
	if st.CompletedAt != nil && st.CompletedAt.After(st.CreatedAt) {
		secs = st.CompletedAt.Sub(st.CreatedAt).Seconds()
	}
	if st.Status != schema.JobStatusCompleted || st.FilesIndexed != int64(sh.Count) {
		return p, fmt.Errorf("job %s: %d of %d indexed", st.Status, st.FilesIndexed, sh.Count)
	}
	devCPU, minioCPU := cpu(ps.stevedore...)-d0, cpu(minio)-m0
	var natsCPU time.Duration
	if !slices.Contains(ps.stevedore, ps.servers[0]) {
		natsCPU = cpu(ps.servers...) - n0
	}
	counts := ps.serverCounts().since(sc0, sh.Count)
	p.NATSSyscalls, p.RouteMsgs = counts.syscalls, counts.routeMsgs
	p.WorkerSyscalls = float64(syscalls(ps.worker)-ws0) / float64(sh.Count)
	sts1, _ := s.MetricSum("stevedore_sts_assume_total")
	h1, err := taskHistogram(s)
	if err != nil {
		return p, err
	}
	p.Seconds = secs
	p.ObjectsPerS = float64(sh.Count) / secs
	p.MBPerS = float64(st.BytesProcessed) / 1e6 / secs
	p.ChunksPerS = float64(st.ChunksProcessed) / secs
	p.TokensPerS = float64(st.TokensUsed) / secs
	p.StevedoreCPU = ms(devCPU, sh.Count)
	p.MinIOCPU = ms(minioCPU, sh.Count)
	p.NATSCPU = ms(natsCPU, sh.Count)
	p.CoresBusy = (devCPU + minioCPU + natsCPU).Seconds() / secs
	p.STSPer1000 = (sts1 - sts0) * 1000 / float64(sh.Count)
	if rss, err := vmHWM(ps.worker); err == nil {
		p.PeakRSSMiB = float64(rss) / (1 << 20)
	}
	p.TaskP50ms, p.TaskP99ms = quantile(h0, h1, 0.5)*1000, quantile(h0, h1, 0.99)*1000
	return p, nil
}

func vmHWM(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmHWM")
}

// histogram is the task-stage message duration buckets summed over workers.
type histogram map[float64]float64 // upper bound → cumulative count

func taskHistogram(s *stack.Stack) (histogram, error) {
	resp, err := http.Get(s.Metric + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, err
	}
	h := histogram{}
	if fam := fams["stevedore_message_duration_seconds"]; fam != nil {
		for _, m := range fam.Metric {
			if !hasLabel(m, "stage", "task") {
				continue
			}
			for _, b := range m.GetHistogram().GetBucket() {
				if !math.IsInf(b.GetUpperBound(), 1) {
					h[b.GetUpperBound()] += float64(b.GetCumulativeCount())
				}
			}
			h[math.Inf(1)] += float64(m.GetHistogram().GetSampleCount())
		}
	}
	return h, nil
}

func hasLabel(m *dto.Metric, name, value string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == name && l.GetValue() == value {
			return true
		}
	}
	return false
}

// quantile estimates the q quantile of the observations between two
// snapshots (linear within a bucket, as Prometheus's histogram_quantile).
func quantile(before, after histogram, q float64) float64 {
	var bounds []float64
	for b := range after {
		bounds = append(bounds, b)
	}
	sort.Float64s(bounds)
	total := after[math.Inf(1)] - before[math.Inf(1)]
	if total <= 0 {
		return 0
	}
	rank, prevBound, prevCount := q*total, 0.0, 0.0
	for _, b := range bounds {
		c := after[b] - before[b]
		if c >= rank {
			if math.IsInf(b, 1) {
				return prevBound
			}
			return prevBound + (b-prevBound)*(rank-prevCount)/math.Max(c-prevCount, 1)
		}
		prevBound, prevCount = b, c
	}
	return prevBound
}

// startProfiles captures a CPU profile of stevedore (the worker in fleet
// mode) and of each nats-server node for the shape's run, and block, mutex,
// goroutine and allocation (since start) profiles at its end.
func startProfiles(s *stack.Stack, ps procs, dir string, logf func(string, ...any)) func() error {
	var g errgroup.Group
	g.Go(func() error {
		return fetch(s.Metric+"/debug/pprof/profile?seconds=20", filepath.Join(dir, "cpu.pprof"))
	})
	for i, url := range ps.serverProfiles {
		g.Go(func() error {
			return fetch(url+"/debug/pprof/profile?seconds=20", filepath.Join(dir, fmt.Sprintf("nats-%d-cpu.pprof", i)))
		})
	}
	return func() error {
		for _, p := range []string{"block", "mutex", "goroutine", "allocs"} {
			if err := fetch(s.Metric+"/debug/pprof/"+p, filepath.Join(dir, p+".pprof")); err != nil {
				return err
			}
		}
		// Who sent and received how many messages on each node: its
		// clients' and routes' counts, and its streams' and consumers'.
		for i, url := range ps.serverMonitors {
			for _, page := range []string{"connz?subs=1", "routez", "jsz?consumers=1&raft=1"} {
				base, _, _ := strings.Cut(page, "?")
				name := fmt.Sprintf("nats-%d-%s.json", i, base)
				if err := fetch(url+"/"+page, filepath.Join(dir, name)); err != nil {
					return err
				}
			}
		}
		err := g.Wait()
		logf("profiles in %s (go tool pprof -top %s)", dir, filepath.Join(dir, "cpu.pprof"))
		return err
	}
}

func fetch(url, file string) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("%s: HTTP %d", url, resp.StatusCode)
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(f, resp.Body)
	return err
}

func revision(root string) string {
	out, err := exec.Command("git", "-C", root, "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	rev := strings.TrimSpace(string(out))
	if st, _ := exec.Command("git", "-C", root, "status", "--porcelain", "--untracked-files=no").Output(); len(st) > 0 {
		rev += "-dirty"
	}
	return rev
}

// previous is the newest earlier result, if any.
func previous(dir string, fleet bool, replicas int) *Result {
	files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	sort.Strings(files)
	for i := len(files) - 1; i >= 0; i-- { // the latest run of the same shape of deployment
		data, err := os.ReadFile(files[i])
		if err != nil {
			continue
		}
		var r Result
		if json.Unmarshal(data, &r) == nil && r.Fleet == fleet && r.Replicas == replicas {
			return &r
		}
	}
	return nil
}

func report(w io.Writer, r Result, prev *Result) {
	mode := "stevedore dev, NATS embedded"
	if r.Fleet {
		mode = "fleet: nats-server, producer, worker"
	}
	if r.Replicas == 3 {
		mode = "fleet: 3-node NATS cluster with streams at R3, producer, worker"
	}
	fmt.Fprintf(w, "\nstevedore bench at %s (%s, %s, %d cores; %s)\n\n", r.Revision, r.At.Format(time.RFC3339), r.GoVersion, r.Raw.Cores, mode)
	if r.Raw.CeilingPerSec > 0 {
		fmt.Fprintf(w, "raw stages, per object of the first text shape (same machine, same run):\n")
		fmt.Fprintf(w, "  S3 GET (root)   %7.0f /s at concurrency 8   %5.2f ms CPU (client + MinIO)\n", r.Raw.GetPerSec, r.Raw.GetCPUms)
		fmt.Fprintf(w, "  S3 GET (session)%7.0f /s at concurrency 8   %5.2f ms CPU (client + MinIO; a tenant's scoped session, as the pipeline)\n", r.Raw.GetSessionPerSec, r.Raw.GetSessionCPUms)
		fmt.Fprintf(w, "  tokenizer       %7.1f MB/s on one core    %5.2f ms CPU\n", r.Raw.TokenizerMBps, r.Raw.TokenizeCPUms)
		fmt.Fprintf(w, "  publish         %7.0f msg/s (Msg-Id)     %5.2f ms CPU (chunk + commit + event, client + server)\n", r.Raw.PublishPerSec, r.Raw.PublishCPUms)
		fmt.Fprintf(w, "  ceiling         %7.0f objects/s           %5.2f ms CPU per object on %d cores (with the root GET: %.0f objects/s)\n\n",
			r.Raw.CeilingPerSec, r.Raw.CeilingCPUms, r.Raw.Cores, r.Raw.RootCeilingPerSec)
	}
	if len(r.Ceilings) > 0 {
		fmt.Fprintf(w, "ceiling per shape (GET with the session + tokenizer + publish of the chunks the splitter makes, commit, event; mean of before and after the pipeline):\n")
		for _, c := range r.Ceilings {
			fmt.Fprintf(w, "  %-20s %8.1f objects/s  %7.2f ms CPU = GET %.2f (%0.f/s) + tokens %.2f + publish %.2f (%d chunks); before %.2f, after %.2f\n",
				c.Shape, c.PerSec, c.CPUms, c.GetCPUms, c.GetPerSec, c.TokenizeCPUms, c.PublishCPUms, c.Chunks, c.CPUmsBefore, c.CPUmsAfter)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "%-22s %9s %7s %8s %9s %8s %8s %7s %6s %6s %7s %7s %7s %6s\n", "pipeline", "objects/s", "MB/s", "chunks/s", "tokens/s",
		"stv ms/o", "minio ms", "nats ms", "cores", "STS/k", "RSS MiB", "p50 ms", "p99 ms", "ratio")
	for _, p := range r.Pipelines {
		ratio := ""
		if p.Ratio > 0 {
			ratio = fmt.Sprintf("%.0f%%", p.Ratio*100)
		}
		if p.RatioFirst > 0 {
			ratio += fmt.Sprintf(" (first %.0f%%, root %.0f%%)", p.RatioFirst*100, p.RatioRoot*100)
		}
		nats := "(in stv)"
		if r.Fleet {
			nats = fmt.Sprintf("%.2f", p.NATSCPU)
		}
		fmt.Fprintf(w, "%-22s %9.1f %7.1f %8.0f %9.0f %8.2f %8.2f %7s %6.2f %6.1f %7.1f %7.1f %7.1f %6s\n", p.Shape.Name, p.ObjectsPerS, p.MBPerS,
			p.ChunksPerS, p.TokensPerS, p.StevedoreCPU, p.MinIOCPU, nats, p.CoresBusy, p.STSPer1000, p.PeakRSSMiB, p.TaskP50ms, p.TaskP99ms, ratio)
	}
	fmt.Fprintf(w, "\nsystem calls (read and write) per object, counts that this VM's speed does not move:\n")
	for _, p := range r.Pipelines {
		nats := "(in the worker)"
		if r.Fleet {
			nats = fmt.Sprintf("%.1f", p.NATSSyscalls)
		}
		var c Ceiling // the shape's ceiling (none: a PDF shape)
		if at := slices.IndexFunc(r.Ceilings, func(c Ceiling) bool { return c.Shape == p.Shape.Name }); at >= 0 {
			c = r.Ceilings[at]
		}
		raw := ""
		if c.PublishSyscalls > 0 {
			raw = fmt.Sprintf(" (the ceiling's publish of its chunks, commit and event: %.1f)", c.PublishSyscalls)
		}
		fmt.Fprintf(w, "  %-22s nats-server %s%s   worker %.1f\n", p.Shape.Name, nats, raw, p.WorkerSyscalls)
		if p.RouteMsgs > 0 {
			fmt.Fprintf(w, "  %-22s messages between the nodes: %.1f (the ceiling's publish: %.1f)\n", "", p.RouteMsgs, c.PublishRouteMsgs)
		}
	}
	if prev == nil {
		return
	}
	fmt.Fprintf(w, "\ncompared with %s (%s):\n", prev.Revision, prev.At.Format(time.RFC3339))
	for _, p := range r.Pipelines {
		for _, q := range prev.Pipelines {
			if q.Shape == p.Shape {
				ratio := ""
				if q.Ratio > 0 {
					ratio += fmt.Sprintf("   ratio %.0f%% → %.0f%%", q.Ratio*100, p.Ratio*100)
				}
				if q.RatioFirst > 0 {
					ratio += fmt.Sprintf("   first-ceiling ratio %.0f%% → %.0f%%", q.RatioFirst*100, p.RatioFirst*100)
				}
				fmt.Fprintf(w, "  %-22s objects/s %8.1f → %8.1f (%+.0f%%)   stevedore ms/object %6.2f → %6.2f%s\n", p.Shape.Name,
					q.ObjectsPerS, p.ObjectsPerS, 100*(p.ObjectsPerS/q.ObjectsPerS-1), q.StevedoreCPU, p.StevedoreCPU, ratio)
			}
		}
	}
}
