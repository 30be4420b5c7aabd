//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/scripts/stack"
	"github.com/stevedore-dev/stevedore/worker/extract/extracttest"
)

// TestHostileDirectory is issue 23's proof on real processes: one worker
// process, its soft memory limit set as under a 512 MiB container, indexes a
// directory holding every hostile document (extracttest.Hostile) and
// ordinary ones, in basic and then advanced mode. It never exits (a crash
// would), stays under 512 MiB of RSS (the container's kill line), indexes
// the ordinary documents and the hostile ones whose text is ordinary once
// the trick is handled, and skips the others with a short reason. Its
// longest log line is measured too.
func TestHostileDirectory(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	s, org, dir := startOnboarded(t, ctx, "Hostile", stack.WithDevArgs("--workers", "0")) // the test starts its own worker
	client := rootS3(s)
	put := func(key string, data []byte) {
		if _, err := client.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("demo-docs"), Key: aws.String(key), Body: bytes.NewReader(data)}); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]string{} // key → "" (indexed) or the skip reason
	for _, d := range extracttest.Hostile() {
		put("hostile/"+d.Name, d.Data)
		want["hostile/"+d.Name] = d.Want
	}
	for i := 0; i < 5; i++ {
		put(fmt.Sprintf("hostile/ordinary-%d.txt", i), []byte(strings.Join(extracttest.Prose(i, 40), "\n")))
		want[fmt.Sprintf("hostile/ordinary-%d.txt", i)] = ""
	}
	put("hostile/ordinary.pdf", extracttest.PDF(3, func(p int) []string { return extracttest.Prose(p, 20) }))
	want["hostile/ordinary.pdf"] = ""
	if out, err := exec.CommandContext(ctx, s.Bin, "pdf-cache").CombinedOutput(); err != nil {
		t.Fatalf("stevedore pdf-cache: %v\n%s", err, out)
	}
	w, _ := workerProc(t, s, dir, "worker-hostile", "--memory-limit-mib", "460")
	pid := w.PID()
	var report []string
	for _, mode := range []string{"basic", "advanced"} {
		st, took, rss := indexAndMeasure(t, ctx, s, org, w, "/v2/collections/hostile-"+mode+"/index/s3/directory",
			map[string]any{"directory_path": "hostile/", "processing_type": mode})
		if w.Exited() || w.PID() != pid {
			t.Fatalf("%s: the worker exited", mode)
		}
		skipped := map[string]string{}
		for _, e := range st.Errors {
			if len(e.Reason) > schema.MaxReasonBytes {
				t.Fatalf("%s: a reason of %d bytes for %s", mode, len(e.Reason), e.Key)
			}
			if e.Outcome != schema.OutcomeSkipped {
				t.Fatalf("%s: %s %s: %s (%s)", mode, e.Key, e.Outcome, e.Reason, e.ErrorCode)
			}
			skipped[e.Key] = strings.SplitN(e.Reason, ":", 2)[0]
		}
		indexed := 0
		for key, reason := range want {
			if skipped[key] != reason {
				t.Errorf("%s: %s: skip reason %q, want %q", mode, key, skipped[key], reason)
			}
			if reason == "" {
				indexed++
			}
		}
		if st.Status != schema.JobStatusCompleted || st.FilesIndexed != int64(indexed) || st.FilesFailed != 0 {
			t.Fatalf("%s: job %+v", mode, st)
		}
		if rss >= 512<<20 {
			t.Fatalf("%s: peak RSS %.1f MiB: a 512 MiB container would have been killed", mode, float64(rss)/(1<<20))
		}
		var reasons []string
		for _, e := range st.Errors {
			reasons = append(reasons, e.Key+" → "+e.Reason)
		}
		t.Logf("%s: skipped %s", mode, strings.Join(reasons, "; "))
		report = append(report, fmt.Sprintf("%s mode %s (%d indexed, %d skipped, %d chunks), peak RSS %.1f MiB", mode, took.Round(time.Millisecond),
			st.FilesIndexed, st.FilesSkipped, st.ChunksProcessed, float64(rss)/(1<<20)))
	}
	longest := longestLine(t, filepath.Join(dir, "worker-hostile.log"))
	line := fmt.Sprintf("hostile directory (%d hostile documents + 6 ordinary), one worker, soft limit 460 MiB, never restarted: %s; longest log line %d bytes",
		len(extracttest.Hostile()), strings.Join(report, "; "), longest)
	t.Log(line)
	appendReport(line)
	if longest > 4096 {
		t.Fatalf("a log line of %d bytes", longest)
	}
}

// longestLine is the length of the longest line of a file.
func longestLine(t *testing.T, path string) int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := bufio.NewReader(f)
	longest, cur := 0, 0
	for {
		line, isPrefix, err := r.ReadLine()
		if err != nil {
			return max(longest, cur)
		}
		cur += len(line)
		if !isPrefix {
			longest, cur = max(longest, cur), 0
		}
	}
}
