//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"image"
	_ "image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/scripts/stack"
	"github.com/stevedore-dev/stevedore/worker"
	"github.com/stevedore-dev/stevedore/worker/extract/extracttest"
)

// TestWorkerMemoryWithScans keeps every task slot of one worker process
// busy with scanned PDFs (one a slot at the default concurrency,
// worker.TaskConcurrencyDefault, of STEVEDORE_SCAN_PAGES pages each, 1 in
// make test, 50 in make ocr-scale) and reads the worker's peak RSS and,
// sampled, that of its Tesseract processes; it reports OCR's pages per second per
// core. Every page is read once (no task outlives its time cap and is
// redone). The bound is issue 28's 300 MiB for the worker.
func TestWorkerMemoryWithScans(t *testing.T) {
	pages := scaleOf(t, "STEVEDORE_SCAN_PAGES", 1) // a scan per slot is what fills memory; more pages take longer (3 at 32 slots: 4 minutes)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Minute)
	defer cancel()
	s, org, dir := startOnboarded(t, ctx, "Scan memory", stack.WithDevArgs("--workers", "0"))
	client := rootS3(s)
	const docs = worker.TaskConcurrencyDefault
	scan := scanPDF(t, s.Root, pages)
	for i := 0; i < docs; i++ {
		if _, err := client.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("demo-docs"), Key: aws.String(fmt.Sprintf("scans-mem/doc-%d.pdf", i)),
			Body: bytes.NewReader(scan)}); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := exec.CommandContext(ctx, s.Bin, "pdf-cache").CombinedOutput(); err != nil {
		t.Fatalf("stevedore pdf-cache: %v\n%s", err, out)
	}
	w, metricsURL := workerProc(t, s, dir, "worker-ocr")
	var childPeak atomic.Int64
	sampleCtx, stopSampling := context.WithCancel(ctx)
	go sampleChildren(sampleCtx, w.PID(), &childPeak)
	st, took, rss := indexAndMeasure(t, ctx, s, org, w, "/v2/collections/scans/index/s3/directory", map[string]any{"directory_path": "scans-mem/"})
	stopSampling()
	if st.Status != schema.JobStatusCompleted || st.FilesIndexed != docs {
		t.Fatalf("job %+v", st)
	}
	// Every page read once: no task ran out of time and was redone.
	if n := metric(t, metricsURL, "stevedore_ocr_pages_total"); n != float64(docs*pages) {
		t.Fatalf("%v pages read by OCR, want %d", n, docs*pages)
	}
	cores := float64(min(2, docs)) // one Tesseract per CPU on this 2-core machine
	report := fmt.Sprintf("OCR memory: one worker indexed %d scanned PDFs of %d pages (%d chunks) in %s: %.2f pages/s, %.2f pages/s per core; "+
		"worker peak RSS %.1f MiB, largest Tesseract process seen %.1f MiB", docs, pages, st.ChunksProcessed, took.Round(time.Second),
		float64(docs*pages)/took.Seconds(), float64(docs*pages)/took.Seconds()/cores, float64(rss)/(1<<20), float64(childPeak.Load())/(1<<20))
	t.Log(report)
	appendReport(report)
	if rss > 300<<20 {
		t.Fatalf("peak RSS %.1f MiB is over 300 MiB", float64(rss)/(1<<20))
	}
}

// scanPDF is a scanned PDF of pages pages: the demo corpus's sideways
// page, turned upright, on every page.
func scanPDF(t *testing.T, root string, pages int) []byte {
	f, err := os.Open(filepath.Join(root, "scripts", "testdata", "corpus", "scans", "sideways.png"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, _, err := image.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	b := img.Bounds()
	up := image.NewGray(image.Rect(0, 0, b.Dy(), b.Dx()))
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			// A quarter turn back: (x, y) → (y, w-1-x).
			up.Set(y-b.Min.Y, b.Max.X-1-x, img.At(x, y))
		}
	}
	return extracttest.ScanPDF(up, 200, pages)
}

// sampleChildren records the largest resident set of pid's child
// processes (Tesseract) until ctx ends.
func sampleChildren(ctx context.Context, pid int, peak *atomic.Int64) {
	for ctx.Err() == nil {
		entries, _ := os.ReadDir("/proc")
		for _, e := range entries {
			status, err := os.ReadFile(filepath.Join("/proc", e.Name(), "status"))
			if err != nil || !strings.Contains(string(status), fmt.Sprintf("\nPPid:\t%d\n", pid)) {
				continue
			}
			for _, line := range strings.Split(string(status), "\n") {
				if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
					kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
					if kb<<10 > peak.Load() {
						peak.Store(kb << 10)
					}
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
}
