//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"golang.org/x/sync/errgroup"

	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/scripts/stack"
	"github.com/stevedore-dev/stevedore/worker"
	"github.com/stevedore-dev/stevedore/worker/extract/extracttest"
)

// textObject is a seekable body of size bytes of plain English text, made on
// the fly so a 1 GiB object needs no 1 GiB buffer.
type textObject struct{ size, off int64 }

var textBlock = func() string {
	var b strings.Builder
	for i := 0; b.Len() < 4096; i++ {
		fmt.Fprintf(&b, "Paragraph %d. The quick brown fox jumps over the lazy dog; stevedore streams this object in parts.\n", i)
		if i%7 == 6 {
			b.WriteString("\n")
		}
	}
	return b.String()[:4096]
}()

func (o *textObject) Read(p []byte) (int, error) {
	if o.off >= o.size {
		return 0, io.EOF
	}
	n := 0
	for n < len(p) && o.off < o.size {
		c := copy(p[n:], textBlock[o.off%4096:])
		if rest := o.size - o.off; int64(c) > rest {
			c = int(rest)
		}
		n += c
		o.off += int64(c)
	}
	return n, nil
}

func (o *textObject) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
		o.off = offset
	case io.SeekCurrent:
		o.off += offset
	case io.SeekEnd:
		o.off = o.size + offset
	}
	if o.off < 0 {
		return 0, errors.New("negative offset")
	}
	return o.off, nil
}

func putText(t *testing.T, ctx context.Context, c *s3.Client, key string, size int64) {
	t.Helper()
	if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("demo-docs"), Key: aws.String(key), Body: &textObject{size: size},
		ContentLength: aws.Int64(size)}); err != nil {
		t.Fatal(err)
	}
}

// workerProc starts `stevedore worker` against the stack's NATS and returns
// it with its metrics URL.
func workerProc(t *testing.T, s *stack.Stack, dir, name string, args ...string) (*stack.Proc, string) {
	t.Helper()
	port := freePort(t)
	p, err := stack.StartProc(name, dir, s.Bin, append(s.Env, "STEVEDORE_NATS_URL="+s.NATSURL), append([]string{"worker",
		"--metrics-listen", fmt.Sprintf("127.0.0.1:%d", port)}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	waitHTTP(t, url+"/readyz")
	return p, url
}

func metric(t *testing.T, metricsURL, name string) float64 {
	t.Helper()
	m := &stack.Stack{Metric: metricsURL}
	v, err := m.MetricSum(name)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func indexFile(t *testing.T, ctx context.Context, s *stack.Stack, org *stack.Org, path string, body map[string]any) string {
	t.Helper()
	body["bucket_name"] = "demo-docs"
	body["auth"] = map[string]string{"type": "assume_role", "role_arn": roleARN, "external_id": org.ExternalID}
	var created struct {
		JobID string `json:"job_id"`
	}
	if code, err := s.Call(ctx, org, "POST", path, body, &created); err != nil || code != 201 {
		t.Fatalf("index request: %d %v", code, err)
	}
	return created.JobID
}

// startOnboarded starts MinIO and `stevedore dev` (with opts) and onboards
// one organization for the demo bucket.
func startOnboarded(t *testing.T, ctx context.Context, name string, opts ...stack.Option) (*stack.Stack, *stack.Org, string) {
	t.Helper()
	dir := t.TempDir()
	s, err := stack.Start(ctx, dir, t.Logf, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	org, _, err := s.Onboard(ctx, name, roleARN, "demo-docs")
	if err != nil {
		t.Fatal(err)
	}
	return s, org, dir
}

// TestSIGTERMHandsBackAtOnce sends SIGTERM to a worker while it processes a
// large object: it stops claiming, gets one second of grace, hands the task
// back, and another worker picks it up at once instead of after AckWait (60 s).
func TestSIGTERMHandsBackAtOnce(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	s, org, dir := startOnboarded(t, ctx, "Shutdown", stack.WithDevArgs("--workers", "0")) // the test starts its own workers
	putText(t, ctx, rootS3(s), "big/long.txt", 300<<20)
	a, aURL := workerProc(t, s, dir, "worker-a", "--shutdown-grace", "1s")
	job := indexFile(t, ctx, s, org, "/v2/collections/shutdown/index/s3/file", map[string]any{"file_uri": "s3://demo-docs/big/long.txt"})
	for metric(t, aURL, `stevedore_messages_inflight{stage="task",worker="0"}`) < 1 {
		time.Sleep(50 * time.Millisecond)
	}
	_, bURL := workerProc(t, s, dir, "worker-b")
	t0 := time.Now()
	a.Signal(syscall.SIGTERM, false)
	for metric(t, bURL, `stevedore_messages_claimed_total{stage="task",worker="0"}`) < 1 {
		if time.Since(t0) > 5*time.Minute {
			t.Fatal("the task was never picked up by the other worker")
		}
		time.Sleep(20 * time.Millisecond)
	}
	pickup := time.Since(t0)
	st, err := s.WaitJob(ctx, org, job, nil)
	if err != nil {
		t.Fatal(err)
	}
	if st.Status != schema.JobStatusCompleted || st.FilesIndexed != 1 {
		t.Fatalf("job %+v", st)
	}
	if pickup > 30*time.Second {
		t.Fatalf("picked up after %s: not handed back (AckWait is 60 s)", pickup)
	}
	report := fmt.Sprintf("SIGTERM during a 300 MiB object: handed back and claimed by another worker %s after the signal (grace 1 s, AckWait 60 s); job completed with %d chunks", pickup.Round(time.Millisecond), st.ChunksProcessed)
	t.Log(report)
	appendReport(report)
}

// indexAndMeasure runs one index request to its end and returns the job,
// how long it took and the worker process's peak RSS.
func indexAndMeasure(t *testing.T, ctx context.Context, s *stack.Stack, org *stack.Org, w *stack.Proc, path string, body map[string]any) (*schema.JobStatus, time.Duration, int64) {
	t.Helper()
	start := time.Now()
	job := indexFile(t, ctx, s, org, path, body)
	st, err := s.WaitJob(ctx, org, job, nil)
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	rss, err := w.RSSHighWater()
	if err != nil {
		t.Fatal(err)
	}
	return st, took, rss
}

// scaleOf is the positive integer in the environment variable name, else
// def: the long measurements' sizes (make memory, make fairness, ...) are
// set this way, and make test runs each with a smaller one.
func scaleOf(t *testing.T, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		t.Fatalf("%s=%q: want a positive count", name, v)
	}
	return n
}

// TestWorkerMemoryIsBounded indexes a large object (STEVEDORE_MEMORY_MIB:
// 256 MiB in make test, 1 GiB in make memory) and 1,000 small ones with one
// worker process at default concurrency and reads its peak RSS (VmHWM) from
// /proc: bodies are streamed, so the object's size must not show — the
// bound, 200 MiB, is under the smaller object's size too.
func TestWorkerMemoryIsBounded(t *testing.T) {
	mib := scaleOf(t, "STEVEDORE_MEMORY_MIB", 256)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	s, org, dir := startOnboarded(t, ctx, "Memory", stack.WithDevArgs("--workers", "0"))
	client := rootS3(s)
	putText(t, ctx, client, "mem/huge.txt", int64(mib)<<20)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(32)
	for i := 0; i < 1000; i++ {
		g.Go(func() error {
			_, err := client.PutObject(gctx, &s3.PutObjectInput{Bucket: aws.String("demo-docs"), Key: aws.String(fmt.Sprintf("mem/small-%04d.txt", i)),
				Body: strings.NewReader(strings.Repeat(fmt.Sprintf("small object %d. ", i), 40))})
			return err
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	w, _ := workerProc(t, s, dir, "worker-mem")
	st, took, rss := indexAndMeasure(t, ctx, s, org, w, "/v2/collections/memory/index/s3/directory", map[string]any{"directory_path": "mem/"})
	if st.Status != schema.JobStatusCompleted || st.FilesIndexed != 1001 {
		t.Fatalf("job %+v", st)
	}
	report := fmt.Sprintf("memory: one worker indexed a %d MiB object + 1,000 small ones (%d chunks, %d tokens) in %s at default concurrency; peak RSS %.1f MiB",
		mib, st.ChunksProcessed, st.TokensUsed, took.Round(time.Second), float64(rss)/(1<<20))
	t.Log(report)
	appendReport(report)
	if rss > 200<<20 {
		t.Fatalf("peak RSS %.1f MiB is over 200 MiB", float64(rss)/(1<<20))
	}
}

// TestWorkerMemoryWithLargePDFs keeps every task slot of one worker
// process busy with large PDFs (a PDF of STEVEDORE_PDF_PAGES pages of prose
// a slot, 150 in make test and 600 in make memory, at the default concurrency, worker.TaskConcurrencyDefault: 2 PDFium instances
// extract while the other slots wait with their documents spooled to disk)
// and reads its peak RSS: the bound is issue 11's 200 MiB. PDFium is
// compiled beforehand by `stevedore pdf-cache`, as the image does at build
// (compiling peaks at ≈ 350 MB for a moment; docs/operations.md).
func TestWorkerMemoryWithLargePDFs(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	s, org, dir := startOnboarded(t, ctx, "PDF memory", stack.WithDevArgs("--workers", "0"))
	client := rootS3(s)
	const docs = worker.TaskConcurrencyDefault
	pages := scaleOf(t, "STEVEDORE_PDF_PAGES", 150)
	var size int
	for i := 0; i < docs; i++ {
		data := extracttest.PDF(pages, func(p int) []string { return extracttest.Prose(i*pages+p, 60) })
		size = len(data)
		if _, err := client.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("demo-docs"), Key: aws.String(fmt.Sprintf("pdfs/doc-%d.pdf", i)),
			Body: bytes.NewReader(data)}); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := exec.CommandContext(ctx, s.Bin, "pdf-cache").CombinedOutput(); err != nil {
		t.Fatalf("stevedore pdf-cache: %v\n%s", err, out)
	}
	w, _ := workerProc(t, s, dir, "worker-pdf")
	st, took, rss := indexAndMeasure(t, ctx, s, org, w, "/v2/collections/pdfs/index/s3/directory", map[string]any{"directory_path": "pdfs/", "processing_type": "advanced"})
	if st.Status != schema.JobStatusCompleted || st.FilesIndexed != docs {
		t.Fatalf("job %+v", st)
	}
	report := fmt.Sprintf("PDF memory: one worker indexed %d PDFs of %d pages (%.1f MB each; %d chunks, %d tokens) in %s (%.0f pages/s) at default concurrency; peak RSS %.1f MiB",
		docs, pages, float64(size)/1e6, st.ChunksProcessed, st.TokensUsed, took.Round(time.Second), float64(docs*pages)/took.Seconds(), float64(rss)/(1<<20))
	t.Log(report)
	appendReport(report)
	if rss > 200<<20 {
		t.Fatalf("peak RSS %.1f MiB is over 200 MiB", float64(rss)/(1<<20))
	}
}

// TestFairnessUnderABigJob queues tenant A's big job (STEVEDORE_FAIRNESS_OBJECTS
// objects: 10,000 in make test, 100,000 in make fairness) and then tenant B's
// one-file job on real processes: claims take turns between tenants, so B's
// job finishes before the tasks A had queued ahead of it are done (a queue
// in order would make B wait for all of them). B's wait is reported.
func TestFairnessUnderABigJob(t *testing.T) {
	big := scaleOf(t, "STEVEDORE_FAIRNESS_OBJECTS", 10_000) // putting the objects into MinIO is most of the test's time
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	s, err := stack.Start(ctx, t.TempDir(), t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	orgA, _, err := s.Onboard(ctx, "Tenant A", roleARN, "demo-docs")
	if err != nil {
		t.Fatal(err)
	}
	orgB, _, err := s.Onboard(ctx, "Tenant B", "arn:aws:iam::123456789012:role/tenant-b", "demo-docs")
	if err != nil {
		t.Fatal(err)
	}
	client := rootS3(s)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(64)
	for i := 0; i < big; i++ {
		g.Go(func() error {
			_, err := client.PutObject(gctx, &s3.PutObjectInput{Bucket: aws.String("demo-docs"), Key: aws.String(fmt.Sprintf("bulk/%06d.txt", i)),
				Body: strings.NewReader(fmt.Sprintf("bulk object %d", i))})
			return err
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	putText(t, ctx, client, "urgent/b.txt", 4096)
	jobA := indexFile(t, ctx, s, orgA, "/v2/collections/bulk/index/s3/directory", map[string]any{"directory_path": "bulk/"})
	var stA schema.JobStatus
	for stA.FilesTotal < int64(big/5) { // A's backlog is well under way
		if _, err := s.Call(ctx, orgA, "GET", "/v2/jobs/"+jobA, nil, &stA); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	aheadOfB := stA.FilesTotal // A's tasks queued before B's
	start := time.Now()
	body := map[string]any{"file_uri": "s3://demo-docs/urgent/b.txt",
		"auth": map[string]string{"type": "assume_role", "role_arn": "arn:aws:iam::123456789012:role/tenant-b", "external_id": orgB.ExternalID}}
	body["bucket_name"] = "demo-docs"
	var created struct {
		JobID string `json:"job_id"`
	}
	if code, err := s.Call(ctx, orgB, "POST", "/v2/collections/urgent/index/s3/file", body, &created); err != nil || code != 201 {
		t.Fatalf("index request: %d %v", code, err)
	}
	stB, err := s.WaitJob(ctx, orgB, created.JobID, nil)
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	if _, err := s.Call(ctx, orgA, "GET", "/v2/jobs/"+jobA, nil, &stA); err != nil {
		t.Fatal(err)
	}
	if stB.Status != schema.JobStatusCompleted || stA.Final() {
		t.Fatalf("B %s, A %s", stB.Status, stA.Status)
	}
	doneA := stA.FilesIndexed + stA.FilesSkipped + stA.FilesFailed
	report := fmt.Sprintf("fairness: tenant B's one-file job finished in %s while tenant A's %d-object job ran (%d of its tasks queued before B's, %d planned and %d done when B's finished)",
		took.Round(time.Millisecond), big, aheadOfB, stA.FilesTotal, doneA)
	t.Log(report)
	appendReport(report)
	if doneA >= aheadOfB {
		t.Fatalf("tenant B's job finished only after the %d tasks tenant A had queued before it (%d done): it waited behind A", aheadOfB, doneA)
	}
}
