// Command demo is `make demo`: it starts the local AWS stand-ins (MinIO) and
// `stevedore dev`, onboards an organization, submits an index request for the
// demo bucket through the HTTP API, shows progress, prints the job summary and
// two sample chunks, and stops everything it started. It exits non-zero on
// any failure.
package main

import (
	"context"
	"fmt"
	"maps"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/scripts/stack"
)

const roleARN = "arn:aws:iam::123456789012:role/stevedore-demo"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "demo failed:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	root, err := stack.RepoRoot()
	if err != nil {
		return err
	}
	dir := filepath.Join(root, ".stevedore", "demo")
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	logf := func(f string, a ...any) { fmt.Printf("==> "+f+"\n", a...) }
	s, err := stack.Start(ctx, dir, logf)
	if err != nil {
		return err
	}
	defer func() { logf("stopping everything the demo started"); s.Stop() }()

	orgp, in, err := s.Onboard(ctx, "Demo Corp", roleARN, "demo-docs")
	if err != nil {
		return err
	}
	org := *orgp
	logf("organization %s created; ExternalId %s", org.OrgID, org.ExternalID)
	logf("integration %s for %s verified: %s", in.IntegrationID, roleARN, in.Status)
	if steps, ok := in.Verification["steps"].([]any); ok {
		for _, st := range steps {
			m, _ := st.(map[string]any)
			fmt.Printf("    %-26v %-40v %v\n", m["status"], m["name"], m["message"])
		}
	}
	body := map[string]any{
		"bucket_name": "demo-docs", "bucket_region": "us-east-1", "processing_type": "advanced", "skip_existing": true,
		"auth": map[string]string{"type": "assume_role", "role_arn": roleARN, "external_id": org.ExternalID},
	}
	var created struct {
		JobID  string `json:"job_id"`
		Status string `json:"status"`
	}
	start := time.Now()
	code, err := s.Call(ctx, &org, "POST", "/v2/collections/demo_docs/index/s3", body, &created)
	if err != nil || code != 201 {
		return fmt.Errorf("index request: HTTP %d: %v", code, err)
	}
	logf("POST /v2/collections/demo_docs/index/s3 → 201 %s (%s)", created.JobID, created.Status)
	wctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	last := ""
	st, err := s.WaitJob(wctx, &org, created.JobID, func(st *schema.JobStatus) {
		line := fmt.Sprintf("    %-9s files %d/%d indexed, %d skipped, %d failed; %d chunks, %d tokens",
			st.Status, st.FilesIndexed, st.FilesTotal, st.FilesSkipped, st.FilesFailed, st.ChunksProcessed, st.TokensUsed)
		if line != last {
			fmt.Println(line)
			last = line
		}
	})
	if err != nil {
		return err
	}
	elapsed := time.Since(start)
	if st.Status != schema.JobStatusCompleted {
		return fmt.Errorf("job %s: %+v", st.Status, st.Error)
	}
	assumes, _ := s.MetricSum("stevedore_sts_assume_total")
	fmt.Printf("\nJob %s %s in %s\n", st.JobID, st.Status, elapsed.Round(time.Millisecond))
	fmt.Printf("  files:  %d total, %d indexed, %d skipped, %d failed\n", st.FilesTotal, st.FilesIndexed, st.FilesSkipped, st.FilesFailed)
	fmt.Printf("  chunks: %d   tokens: %d (cl100k_base)   bytes: %d\n", st.ChunksProcessed, st.TokensUsed, st.BytesProcessed)
	fmt.Printf("  STS AssumeRole calls: %.0f for %d objects\n", assumes, st.FilesTotal)
	for _, e := range st.Errors {
		fmt.Printf("  %s %s: %s\n", e.Outcome, e.Key, e.Reason)
	}
	chunks, _, err := s.Chunks(ctx, org.OrgID, "demo_docs")
	if err != nil {
		return err
	}
	// What each document type became, and a sample: the first chunk of a
	// text file, and a chunk of the PDF, the slides and the spreadsheet with
	// the structure the advanced processing type keeps.
	type perType struct{ files, chunks, tokens int }
	types := map[string]*perType{}
	seenKey := map[string]bool{}
	samples := map[string]*schema.Chunk{}
	for _, c := range chunks {
		kind, _, _ := strings.Cut(c.ContentType, ";")
		pt := types[kind]
		if pt == nil {
			pt = &perType{}
			types[kind] = pt
		}
		if !seenKey[c.Key] {
			seenKey[c.Key] = true
			pt.files++
		}
		pt.chunks++
		pt.tokens += c.TokenCount
		want := map[string]int{"code/go/bufio.go": 0, "documents/handbook.pdf": 1, "documents/handbook.pptx": 1, "documents/cranes.xlsx": 0}
		if i, ok := want[c.Key]; ok && c.Index == i {
			samples[c.Key] = c
		}
	}
	fmt.Printf("\n  %-76s %5s %6s %7s\n", "content type", "files", "chunks", "tokens")
	for _, kind := range slices.Sorted(maps.Keys(types)) {
		pt := types[kind]
		fmt.Printf("  %-76s %5d %6d %7d\n", kind, pt.files, pt.chunks, pt.tokens)
	}
	for _, key := range []string{"code/go/bufio.go", "documents/handbook.pdf", "documents/handbook.pptx", "documents/cranes.xlsx"} {
		c, ok := samples[key]
		if !ok {
			return fmt.Errorf("no sample chunk of %s", key)
		}
		text := c.Text
		if len(text) > 300 {
			text = text[:300] + "…"
		}
		where := ""
		if c.PageStart > 0 {
			where = fmt.Sprintf("  pages %d–%d", c.PageStart, c.PageEnd)
		}
		if len(c.HeadingPath) > 0 {
			where += "  under " + strings.Join(c.HeadingPath, " › ")
		}
		fmt.Printf("\n--- sample chunk %s  s3://%s/%s  #%d  %d tokens  %s%s ---\n%s\n", c.ChunkID, c.Bucket, c.Key, c.Index+1, c.TokenCount, c.ExtractorVersion, where, text)
	}
	fmt.Println()
	return nil
}
