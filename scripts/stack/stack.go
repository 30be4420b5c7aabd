// Package stack runs the local stevedore stack as real processes — MinIO
// (scripts/local-aws.sh) and `stevedore dev` — and drives it the way a user
// does: the CLI for onboarding, the HTTP API for index requests, NATS for
// reading what was published. The demo (scripts/demo) and the end-to-end
// tests (scripts/e2e) share it.
package stack

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/stevedore-dev/stevedore/producer/sqstest"
	"github.com/stevedore-dev/stevedore/schema"
)

// Stack is a running MinIO plus `stevedore dev`.
type Stack struct {
	Root, Dir, Bin       string
	NATSURL, API, Metric string
	Env                  []string
	// Replicas is the stream replication of the NATS the fleet runs on
	// (0: `stevedore dev`'s single embedded server).
	Replicas int
	// SQS is moto_server and QueueURL the notification queue `stevedore dev`
	// reads, when started WithSQS.
	SQS      *sqstest.Server
	QueueURL string
	dev      *Proc
}

// Option changes what Start starts.
type Option func(*options)

type options struct {
	sqs, noDev bool
	tags       string
	devArgs    []string
}

// WithDevArgs adds flags to `stevedore dev`.
func WithDevArgs(args ...string) Option {
	return func(o *options) { o.devArgs = append(o.devArgs, args...) }
}

// WithoutDev starts only MinIO (and builds the binary): the caller runs the
// NATS servers and stevedore processes itself.
func WithoutDev() Option { return func(o *options) { o.noDev = true } }

// WithBuildTags builds the binary with these tags (e.g. "faults").
func WithBuildTags(tags string) Option { return func(o *options) { o.tags = tags } }

// WithSQS also starts moto_server (required: it says what to install when
// absent), creates a notification queue and has `stevedore dev` read it.
func WithSQS() Option { return func(o *options) { o.sqs = true } }

// Org is what `stevedore org create --json` prints.
type Org struct {
	OrgID      string `json:"org_id"`
	APIKey     string `json:"api_key"`
	ExternalID string `json:"external_id"`
}

// Integration is what Onboard registered and verified.
type Integration struct {
	IntegrationID string         `json:"integration_id"`
	Status        string         `json:"status"`
	StatusReason  string         `json:"status_reason"`
	Verification  map[string]any `json:"verification"`
}

// Onboard creates an organization and registers and verifies roleARN for
// bucket through the CLI, as an operator would.
func (s *Stack) Onboard(ctx context.Context, name, roleARN, bucket string) (*Org, *Integration, error) {
	var org Org
	if err := s.CLI(ctx, &org, "org", "create", "--name", name); err != nil {
		return nil, nil, err
	}
	var in Integration
	if err := s.CLI(ctx, &in, "integration", "add", "--org", org.OrgID, "--role-arn", roleARN, "--bucket", bucket); err != nil {
		return nil, nil, err
	}
	if err := s.CLI(ctx, &in, "integration", "verify", "--org", org.OrgID, "--id", in.IntegrationID); err != nil {
		return nil, nil, err
	}
	if in.Status != "active" {
		return nil, nil, fmt.Errorf("integration %s is %s: %s", in.IntegrationID, in.Status, in.StatusReason)
	}
	return &org, &in, nil
}

// RepoRoot finds the repository root from the working directory.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found above the working directory")
		}
		dir = parent
	}
}

// builds holds the binaries this process built, by build tags.
var builds struct {
	sync.Mutex
	bins map[string]string
}

// Binary builds stevedore with tags (none: "") once per process, into
// .stevedore/stack-bin under root, and returns its path: every stack of a
// test binary runs the same build, and linking it again for each test cost
// seconds a test. The binary is written under a temporary name and renamed,
// so another process's build never replaces a file a process is starting.
func Binary(ctx context.Context, root, tags string, logf func(string, ...any)) (string, error) {
	builds.Lock()
	defer builds.Unlock()
	if bin, ok := builds.bins[tags]; ok {
		return bin, nil
	}
	dir := filepath.Join(root, ".stevedore", "stack-bin")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	name := "stevedore"
	if tags != "" {
		name += "-" + strings.NewReplacer(",", "-", " ", "-").Replace(tags)
	}
	bin := filepath.Join(dir, name)
	tmp := fmt.Sprintf("%s.%d", bin, os.Getpid())
	logf("building stevedore")
	args := []string{"build", "-o", tmp}
	if tags != "" {
		args = append(args, "-tags", tags)
	}
	build := exec.CommandContext(ctx, "go", append(args, "./cmd/stevedore")...)
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	if err := os.Rename(tmp, bin); err != nil {
		return "", err
	}
	if builds.bins == nil {
		builds.bins = map[string]string{}
	}
	builds.bins[tags] = bin
	return bin, nil
}

// Ports handed to servers come from a band below Linux's ephemeral range
// (32768–60999), so no outgoing connection of any process takes one between
// freePort and the server's bind; a process hands each port out once, so
// tests running in parallel never get the same one; and each process starts
// at its own offset in the band, so two test processes rarely try the same.
const portsFrom, portsTo = 20000, 32000

var portBand struct {
	sync.Mutex
	next int
}

func freePort() (int, error) { return freePorts(1) }

// freePorts returns the first of n consecutive free ports (MinIO takes a
// port and the next one for its console).
func freePorts(n int) (int, error) {
	portBand.Lock()
	defer portBand.Unlock()
	if portBand.next == 0 {
		portBand.next = portsFrom + os.Getpid()*97%(portsTo-portsFrom)
	}
	for range portsTo - portsFrom {
		if portBand.next+n > portsTo {
			portBand.next = portsFrom
		}
		p := portBand.next
		portBand.next += n
		if bindable(p, n) {
			return p, nil
		}
	}
	return 0, fmt.Errorf("no %d free consecutive ports left between %d and %d", n, portsFrom, portsTo)
}

// bindable reports whether ports p to p+n-1 can all be listened on now.
func bindable(p, n int) bool {
	for i := range n {
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p+i))
		if err != nil {
			return false // taken: by another process, or a server this one started
		}
		l.Close()
	}
	return true
}

// Start builds stevedore, starts MinIO and `stevedore dev` on free loopback
// ports with state under dir, and waits until the API is ready.
func Start(ctx context.Context, dir string, logf func(string, ...any), opts ...Option) (*Stack, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	s := &Stack{Root: root, Dir: dir}
	if s.Bin, err = Binary(ctx, root, o.tags, logf); err != nil {
		return nil, err
	}
	ports := make([]int, 4)
	if ports[0], err = freePorts(2); err != nil {
		return nil, err
	}
	for i := 1; i < len(ports); i++ {
		if ports[i], err = freePort(); err != nil {
			return nil, err
		}
	}
	minioPort := ports[0]
	logf("starting MinIO (the first run builds it from the Go module proxy: a few minutes)")
	aws := exec.CommandContext(ctx, filepath.Join(root, "scripts", "local-aws.sh"), "start", filepath.Join(dir, "aws"))
	aws.Env = append(os.Environ(), "STEVEDORE_MINIO_PORT="+strconv.Itoa(minioPort))
	aws.Stdout, aws.Stderr = os.Stderr, os.Stderr
	if err := aws.Run(); err != nil {
		s.Stop()
		return nil, fmt.Errorf("local-aws start: %w", err)
	}
	envCmd := exec.CommandContext(ctx, filepath.Join(root, "scripts", "local-aws.sh"), "env", filepath.Join(dir, "aws"))
	envCmd.Env = aws.Env
	envOut, err := envCmd.Output()
	if err != nil {
		s.Stop()
		return nil, err
	}
	s.Env = os.Environ()
	for _, line := range strings.Split(string(envOut), "\n") {
		if kv, ok := strings.CutPrefix(line, "export "); ok {
			s.Env = append(s.Env, kv)
		}
	}
	if o.noDev {
		return s, nil
	}
	natsAddr := "127.0.0.1:" + strconv.Itoa(ports[1])
	s.NATSURL = "nats://" + natsAddr
	s.API = "http://127.0.0.1:" + strconv.Itoa(ports[2])
	s.Metric = "http://127.0.0.1:" + strconv.Itoa(ports[3])
	devLog := filepath.Join(dir, "stevedore-dev.log")
	args := []string{"dev", "--data", filepath.Join(dir, "data"), "--nats-listen", natsAddr,
		"--listen", "127.0.0.1:" + strconv.Itoa(ports[2]), "--metrics-listen", "127.0.0.1:" + strconv.Itoa(ports[3])}
	if o.sqs {
		if s.SQS, err = sqstest.Launch(); err != nil {
			s.Stop()
			return nil, err
		}
		logf("started moto_server (SQS) at %s", s.SQS.URL)
		if s.QueueURL, err = s.SQS.CreateQueue(ctx, "stevedore-notifications", 30*time.Second); err != nil {
			s.Stop()
			return nil, err
		}
		s.Env = append(s.Env, "AWS_ENDPOINT_URL_SQS="+s.SQS.URL)
		args = append(args, "--sqs-queue-url", s.QueueURL, "--sqs-visibility", "30s")
	}
	if s.dev, err = StartProc("stevedore-dev", dir, s.Bin, append(s.Env, "STEVEDORE_NATS_URL="+s.NATSURL), append(args, o.devArgs...)...); err != nil {
		s.Stop()
		return nil, err
	}
	logf("started stevedore dev (pid %d), log %s", s.dev.PID(), devLog)
	err = nil
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); {
		if err = WaitOK(s.Metric+"/readyz", time.Second); err == nil || s.dev.Exited() {
			break // ready, or it stopped: no use waiting
		}
	}
	if err != nil {
		exited := s.dev.Exited()
		s.Stop()
		// The test's directory is removed with it: say what the log said.
		tail, _ := os.ReadFile(devLog)
		if len(tail) > 4096 {
			tail = tail[len(tail)-4096:]
		}
		return nil, fmt.Errorf("stevedore dev (exited: %v): %w; its log ends:\n%s", exited, err, tail)
	}
	return s, nil
}

// Stop stops `stevedore dev` (SIGTERM, then SIGKILL) and MinIO, by PID.
func (s *Stack) Stop() {
	s.dev.Stop()
	if s.Root != "" {
		_ = exec.Command(filepath.Join(s.Root, "scripts", "local-aws.sh"), "stop", filepath.Join(s.Dir, "aws")).Run()
	}
	if s.SQS != nil {
		s.SQS.Stop()
	}
}

// RootS3 is an S3 client of MinIO's root user, standing in for the
// customer's own writes.
func (s *Stack) RootS3() *s3.Client {
	endpoint := ""
	for _, kv := range s.Env {
		if v, ok := strings.CutPrefix(kv, "AWS_ENDPOINT_URL_S3="); ok {
			endpoint = v
		}
	}
	return s3.New(s3.Options{Region: "us-east-1", BaseEndpoint: aws.String(endpoint), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider("stevedore-root", "stevedore-root-secret", "")})
}

// MinIOPID is the MinIO server's process ID.
func (s *Stack) MinIOPID() (int, error) {
	b, err := os.ReadFile(filepath.Join(s.Dir, "aws", "minio.pid"))
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

// DevPID is the `stevedore dev` process ID.
func (s *Stack) DevPID() int { return s.dev.PID() }

// CLI runs a stevedore operator command with --json against the stack's NATS
// and decodes its output into v.
func (s *Stack) CLI(ctx context.Context, v any, args ...string) error {
	cmd := exec.CommandContext(ctx, s.Bin, append(args, "--json", "--nats-url", s.NATSURL)...)
	cmd.Env = s.Env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("stevedore %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	return json.Unmarshal(out, v)
}

// Call sends an API request as org and decodes the JSON answer into v.
func (s *Stack) Call(ctx context.Context, org *Org, method, path string, body any, v any) (int, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, s.API+path, rd)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	if org != nil {
		req.Header.Set("Authorization", "Bearer "+org.APIKey)
		req.Header.Set("X-Organization-ID", org.OrgID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, err
	}
	if v != nil {
		if err := json.Unmarshal(data, v); err != nil {
			return resp.StatusCode, fmt.Errorf("decode %s: %w", data, err)
		}
	}
	return resp.StatusCode, nil
}

// WaitJob polls GET /v2/jobs/{id} until the job is completed or failed,
// calling progress after each poll.
func (s *Stack) WaitJob(ctx context.Context, org *Org, jobID string, progress func(*schema.JobStatus)) (*schema.JobStatus, error) {
	for {
		var st schema.JobStatus
		code, err := s.Call(ctx, org, "GET", "/v2/jobs/"+jobID, nil, &st)
		switch {
		case code == http.StatusNotFound:
			return nil, fmt.Errorf("GET job %s: 404", jobID)
		case err != nil || code != 200:
			// The API may be reconnecting to NATS (a node restarted): poll on.
		default:
			if progress != nil {
				progress(&st)
			}
			if st.Final() {
				return &st, nil
			}
		}
		select {
		case <-ctx.Done():
			return &st, fmt.Errorf("job %s still %s: %w", jobID, st.Status, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Chunks reads every message of one collection from CHUNKS with an ordered
// consumer: chunks and tombstones, in publish order, duplicates included.
func (s *Stack) Chunks(ctx context.Context, org, collection string) (chunks []*schema.Chunk, tombstones []*schema.Tombstone, err error) {
	nc, err := nats.Connect(s.NATSURL)
	if err != nil {
		return nil, nil, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, nil, err
	}
	stream, err := js.Stream(ctx, schema.StreamChunks)
	if err != nil {
		return nil, nil, err
	}
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{schema.ChunkSubject(org, collection)}})
	if err != nil {
		return nil, nil, err
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return nil, nil, err
	}
	remaining := info.NumPending
	for remaining > 0 {
		batch, err := cons.Fetch(int(min(remaining, 500)), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return nil, nil, err
		}
		n := 0
		for m := range batch.Messages() {
			n++
			if bytes.Contains(m.Data(), []byte(`"commit":true`)) {
				continue // commit records make chunks visible; the chunks are what callers count
			}
			if bytes.Contains(m.Data(), []byte(`"tombstone":true`)) {
				t, err := schema.DecodeTombstone(m.Data())
				if err != nil {
					return nil, nil, err
				}
				tombstones = append(tombstones, t)
				continue
			}
			c, err := schema.DecodeChunk(m.Data())
			if err != nil {
				return nil, nil, err
			}
			chunks = append(chunks, c)
		}
		if n == 0 {
			return nil, nil, fmt.Errorf("CHUNKS: %d messages expected but none arrived", remaining)
		}
		remaining -= uint64(n)
	}
	return chunks, tombstones, nil
}

// MetricSum returns the sum of the samples of a metric from /metrics, of
// those with the given labels when the name carries some.
func (s *Stack) MetricSum(name string) (float64, error) {
	resp, err := http.Get(s.Metric + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	// name is a metric name, optionally with label pairs that must all be
	// present (in any order, among others): name{a="x",b="y"}.
	metric, want, _ := strings.Cut(name, "{")
	var pairs []string
	if want = strings.TrimSuffix(want, "}"); want != "" {
		pairs = strings.Split(want, ",")
	}
	var sum float64
	for _, line := range strings.Split(string(data), "\n") {
		if !strings.HasPrefix(line, metric) {
			continue
		}
		rest := line[len(metric):]
		if rest == "" || (rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		labels := ""
		if rest[0] == '{' {
			labels = rest[1:strings.IndexByte(rest, '}')]
		}
		have := map[string]bool{}
		for _, p := range strings.Split(labels, ",") {
			have[p] = true
		}
		match := true
		for _, p := range pairs {
			match = match && have[p]
		}
		if !match {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err == nil {
			sum += v
		}
	}
	return sum, nil
}
