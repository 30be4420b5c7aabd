//go:build e2e

// Package e2e runs stevedore end to end on real processes: MinIO (S3 + STS)
// and `stevedore dev` (embedded NATS JetStream), driven through the CLI and
// the HTTP API. Run with `make test` (or go test -tags e2e ./scripts/e2e/).
//
// Tests that mostly wait on their own stack (API calls, notifications,
// schedules of seconds) call t.Parallel: Go runs them together, up to
// -parallel at once, after the others, which measure memory or CPU, or
// kill processes, and so run alone. Each stack has its own ports (stack
// hands each out once) and its own directories.
package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"

	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/scripts/stack"
	"github.com/stevedore-dev/stevedore/worker/creds"
	"github.com/stevedore-dev/stevedore/worker/extract"
	"github.com/stevedore-dev/stevedore/worker/token"
)

const roleARN = "arn:aws:iam::123456789012:role/stevedore-e2e"

// corpus counts the demo corpus independently of stevedore: files, the ones
// that are text, and the reference token total from tiktoken's golden file.
type corpus struct {
	files, text int
	tokens      int64
}

func countCorpus(t *testing.T, root string) corpus {
	var c corpus
	dir := filepath.Join(root, "scripts", "testdata", "corpus")
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		c.files++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The text files and their token counts come from the reference
	// (scripts/tiktoken-golden.mjs over the corpus with npm tiktoken): every
	// file without NUL bytes, decoded as UTF-8 or, failing that, as
	// windows-1252.
	raw, err := os.ReadFile(filepath.Join(root, "worker", "token", "testdata", "cl100k_golden.json"))
	if err != nil {
		t.Fatal(err)
	}
	var g struct {
		Files []struct {
			Count int64 `json:"count"`
		} `json:"files"`
	}
	if err := json.Unmarshal(raw, &g); err != nil {
		t.Fatal(err)
	}
	c.text = len(g.Files)
	for _, f := range g.Files {
		c.tokens += f.Count
	}
	// The documents (PDF, Office, EPUB, HTML, a windows-1252 CSV) count the
	// tokens of their extracted text: the extractors' quality is proved by
	// worker/extract's tests, the counts here by the tokenizer's golden file.
	cache, _ := os.UserCacheDir() // where stevedore dev caches PDFium's compiled module too
	pdf := extract.NewPDF(extract.PDFConfig{CacheDir: filepath.Join(cache, "stevedore", "wazero")})
	defer pdf.Close()
	// The scans and images are read by OCR (the same Tesseract, one thread:
	// the same text stevedore dev reads).
	ocr, err := extract.NewOCR(extract.OCRConfig{})
	if err != nil {
		t.Fatalf("the demo corpus has scans: %v", err)
	}
	for _, sub := range []string{"documents", "scans"} {
		docs, err := os.ReadDir(filepath.Join(dir, sub))
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range docs {
			c.tokens += documentTokens(t, filepath.Join(dir, sub, d.Name()), extract.Options{PDF: pdf, OCR: ocr})
			c.text++
		}
	}
	return c
}

// documentTokens is the token count of a document's extracted text.
func documentTokens(t *testing.T, path string, opts extract.Options) int64 {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	x, err := opts.Open(f, filepath.Base(path), "")
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	defer x.Close()
	var text strings.Builder
	for {
		part, err := x.Next(1 << 20)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		text.WriteString(part)
	}
	enc, _ := token.Get(token.Cl100kBase)
	return int64(enc.Count(text.String()))
}

func TestIndexBucketEndToEnd(t *testing.T) {
	t.Parallel() // mostly waits on its own stack: runs beside the others that do (package doc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	s, err := stack.Start(ctx, t.TempDir(), t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	want := countCorpus(t, s.Root)

	orgp, in, err := s.Onboard(ctx, "E2E", roleARN, "demo-docs")
	if err != nil {
		t.Fatal(err)
	}
	org := *orgp
	t.Logf("verification on MinIO: %v", in.Verification["steps"])
	body := func(ext string) map[string]any {
		return map[string]any{"bucket_name": "demo-docs", "skip_existing": true,
			"auth": map[string]string{"type": "assume_role", "role_arn": roleARN, "external_id": ext}}
	}

	t.Run("refusals before any AWS call", func(t *testing.T) {
		var e struct{ Error struct{ Code string } }
		if code, _ := s.Call(ctx, &org, "POST", "/v2/collections/c/index/s3", body("cap_org_000000000000000000000000"), &e); code != 403 || e.Error.Code != "external_id_mismatch" {
			t.Fatalf("wrong external_id: HTTP %d %s", code, e.Error.Code)
		}
		bad := org
		bad.APIKey += "x"
		if code, _ := s.Call(ctx, &bad, "POST", "/v2/collections/c/index/s3", body(org.ExternalID), &e); code != 401 {
			t.Fatalf("wrong api key: HTTP %d", code)
		}
		other := org
		other.OrgID = "org_0000000000000000"
		if code, _ := s.Call(ctx, &other, "POST", "/v2/collections/c/index/s3", body(org.ExternalID), &e); code != 403 {
			t.Fatalf("org mismatch: HTTP %d", code)
		}
		if n, _ := s.MetricSum("stevedore_sts_assume_total"); n != 0 {
			t.Fatalf("refused requests made %v AssumeRole calls", n)
		}
	})

	var job struct {
		JobID string `json:"job_id"`
	}
	if code, err := s.Call(ctx, &org, "POST", "/v2/collections/e2e/index/s3", body(org.ExternalID), &job); code != 201 || err != nil {
		t.Fatalf("index: HTTP %d %v", code, err)
	}
	st, err := s.WaitJob(ctx, &org, job.JobID, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("job: %+v", st)
	if st.Status != schema.JobStatusCompleted || st.FilesTotal != int64(want.files) || st.FilesIndexed != int64(want.text) ||
		st.FilesSkipped != int64(want.files-want.text) || st.FilesFailed != 0 || st.TokensUsed != want.tokens {
		t.Fatalf("job counts %+v, want %d files, %d indexed, %d skipped, %d tokens", st, want.files, want.text, want.files-want.text, want.tokens)
	}

	chunks, _, err := s.Chunks(ctx, org.OrgID, "e2e")
	if err != nil {
		t.Fatal(err)
	}
	enc, _ := token.Get(token.Cl100kBase)
	seen := map[string]bool{}
	var tokens int64
	for _, c := range chunks {
		if seen[c.ChunkID] {
			t.Fatalf("duplicate chunk ID %s", c.ChunkID)
		}
		seen[c.ChunkID] = true
		if n := enc.Count(c.Text); n != c.TokenCount {
			t.Fatalf("chunk %s token_count %d, tokenizer says %d", c.ChunkID, c.TokenCount, n)
		}
		tokens += int64(c.TokenCount)
	}
	if int64(len(chunks)) != st.ChunksProcessed || tokens != st.TokensUsed {
		t.Fatalf("CHUNKS has %d chunks / %d tokens, job says %d / %d", len(chunks), tokens, st.ChunksProcessed, st.TokensUsed)
	}
	assumes, _ := s.MetricSum("stevedore_sts_assume_total")
	t.Logf("indexed %d objects into %d chunks, %d tokens, with %.0f AssumeRole calls", st.FilesTotal, len(chunks), tokens, assumes)
	if assumes != 1 {
		t.Fatalf("AssumeRole calls = %v, want 1 for one job", assumes)
	}

	// A second request with skip_existing indexes nothing new.
	var job2 struct {
		JobID string `json:"job_id"`
	}
	if code, _ := s.Call(ctx, &org, "POST", "/v2/collections/e2e/index/s3", body(org.ExternalID), &job2); code != 201 {
		t.Fatalf("second index: HTTP %d", code)
	}
	st2, err := s.WaitJob(ctx, &org, job2.JobID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if st2.Status != schema.JobStatusCompleted || st2.FilesIndexed != 0 || st2.FilesSkipped != int64(want.files) || st2.ChunksProcessed != 0 {
		t.Fatalf("second job %+v: want everything skipped", st2)
	}
	again, _, err := s.Chunks(ctx, org.OrgID, "e2e")
	if err != nil {
		t.Fatal(err)
	}
	if len(again) != len(chunks) {
		t.Fatalf("second job published %d new chunks", len(again)-len(chunks))
	}

	// Keys that need escaping, read by the worker's own signed GET (not the
	// SDK's): MinIO checks every signature, so one wrong escape is a
	// SignatureDoesNotMatch here.
	t.Run("odd keys", func(t *testing.T) {
		keys := []string{"odd/a b+c.txt", "odd/ünïcödé ✓.txt", "odd/100% sure.txt", "odd/q?x=1&y=2#frag.txt",
			"odd/tilde~(1)[2]{3}.txt", "odd/semi;colon,comma=eq@at$dollar'quote!.txt", "odd/日本語/ファイル.txt", "odd/dots..and.-_.txt"}
		root := s.RootS3()
		for i, k := range keys {
			if _, err := root.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("demo-docs"), Key: aws.String(k),
				Body: strings.NewReader(fmt.Sprintf("Object %d has an odd key: %s", i, k))}); err != nil {
				t.Fatalf("put %q: %v", k, err)
			}
		}
		b := body(org.ExternalID)
		b["directory_path"] = "odd/"
		var job struct {
			JobID string `json:"job_id"`
		}
		if code, err := s.Call(ctx, &org, "POST", "/v2/collections/odd/index/s3/directory", b, &job); code != 201 || err != nil {
			t.Fatalf("index: HTTP %d %v", code, err)
		}
		st, err := s.WaitJob(ctx, &org, job.JobID, nil)
		if err != nil {
			t.Fatal(err)
		}
		if st.Status != schema.JobStatusCompleted || st.FilesIndexed != int64(len(keys)) || st.FilesFailed != 0 {
			t.Fatalf("odd keys: %+v", st)
		}
		chunks, _, err := s.Chunks(ctx, org.OrgID, "odd")
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]bool{}
		for _, c := range chunks {
			got[c.Key] = true
		}
		for _, k := range keys {
			if !got[k] {
				t.Errorf("no chunk of %q (chunks of %v)", k, got)
			}
		}
	})
}

// TestSessionPolicyScopesCredentials checks, on MinIO's real STS, that the
// broker's credentials for one bucket cannot read another bucket the same
// identity can read.
func TestSessionPolicyScopesCredentials(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	s, err := stack.Start(ctx, t.TempDir(), t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	for _, kv := range s.Env {
		if k, v, ok := strings.Cut(kv, "="); ok && (strings.HasPrefix(k, "AWS_") || strings.HasPrefix(k, "STEVEDORE_")) {
			t.Setenv(k, v)
		}
	}
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		t.Fatal(err)
	}
	broker, err := creds.New(creds.Config{STS: sts.NewFromConfig(cfg)})
	if err != nil {
		t.Fatal(err)
	}
	policy, err := creds.SessionPolicy("demo-docs", "")
	if err != nil {
		t.Fatal(err)
	}
	p, err := broker.Retrieve(ctx, creds.Request{RoleARN: roleARN, ExternalID: "cap_org_x", SessionName: "stevedore-e2e-scope", Policy: policy})
	if err != nil {
		t.Fatal(err)
	}
	client := s3.NewFromConfig(cfg, func(o *s3.Options) { o.Credentials = p; o.UsePathStyle = true })
	if _, err := client.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String("demo-docs"), MaxKeys: aws.Int32(1)}); err != nil {
		t.Fatalf("scoped credentials cannot read their own bucket: %v", err)
	}
	_, err = client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("other-bucket"), Key: aws.String("secret.txt")})
	var apiErr smithy.APIError
	if !errors.As(err, &apiErr) || apiErr.ErrorCode() != "AccessDenied" {
		t.Fatalf("scoped credentials read another bucket: err = %v", err)
	}
	if c := creds.Classify(err); c.Class != schema.ClassTenantPermission {
		t.Fatalf("denial classified as %s", c.Class)
	}
	// The same identity without a session policy can read it: the scope comes from the session policy.
	base := s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = true })
	if _, err := base.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("other-bucket"), Key: aws.String("secret.txt")}); err != nil {
		t.Fatalf("control: the worker identity itself cannot read other-bucket: %v", err)
	}
}
