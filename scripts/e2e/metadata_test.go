//go:build e2e

package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/schema/collections"
	"github.com/stevedore-dev/stevedore/scripts/stack"
)

// TestMetadataAndFilters on MinIO, the scenario of issue 27: a report
// uploaded with S3 user metadata (department=legal) beside its Bedrock
// sidecar (report.txt.metadata.json), a wiki page with a Kendra sidecar
// (_source_uri), and a .log; a directory job with custom_metadata and
// "exclude_patterns": ["*.log"]. The chunks carry the object's URI (the
// Kendra page: its _source_uri), its last-modified time and size as MinIO
// answered, and the document's metadata (custom < user metadata < sidecar);
// the sidecars are not documents; the log is counted excluded. Then a
// metadata-only change (a copy in place with new user metadata: MinIO keeps
// the ETag) and a changed sidecar reach the chunks on a skip_existing run
// without extracting, under the same chunk IDs. A sync that then excludes
// the report removes it.
func TestMetadataAndFilters(t *testing.T) {
	t.Parallel() // mostly waits on its own stack: runs beside the others that do (package doc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	s, org, _ := startOnboarded(t, ctx, "Metadata")
	c := rootS3(s)
	body := strings.Repeat("The legal department's report on quay crane productivity. ", 20)
	put := func(key, body string, meta map[string]string) {
		t.Helper()
		if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("demo-docs"), Key: aws.String(key), Body: strings.NewReader(body), Metadata: meta}); err != nil {
			t.Fatal(err)
		}
	}
	put("meta/report.txt", body, map[string]string{"department": "legal", "Cost-Center": "42", "owner": "s3"})
	put("meta/report.txt.metadata.json", `{"metadataAttributes": {"year": 2024, "owner": "ops"}}`, nil)
	put("meta/wiki.txt", "A page of the intranet about berth schedules.", nil)
	put("meta/wiki.txt.metadata.json", `{"Attributes": {"_source_uri": "https://intranet.example/wiki/berths", "_category": "wiki"}}`, nil)
	put("meta/app.log", "a log line\n", nil)
	head, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("demo-docs"), Key: aws.String("meta/report.txt")})
	if err != nil {
		t.Fatal(err)
	}
	request := map[string]any{"directory_path": "meta/", "custom_metadata": map[string]string{"team": "quay", "department": "ops"}, "exclude_patterns": []string{"*.log"}}
	job := indexFile(t, ctx, s, org, "/v2/collections/meta/index/s3/directory", request)
	st, err := s.WaitJob(ctx, org, job, nil)
	if err != nil {
		t.Fatal(err)
	}
	if st.FilesIndexed != 2 || st.FilesExcluded != 1 || st.FilesTotal != 2 {
		t.Fatalf("job %+v", st)
	}
	js := jetStream(t, s.NATSURL)
	first := visibleChunks(t, ctx, s, org.OrgID)
	for _, ch := range first {
		src := ch.Source
		switch ch.Key {
		case "meta/report.txt":
			if src == nil || src.URI != "s3://demo-docs/meta/report.txt" || src.Size != int64(len(body)) || src.LastModified == nil ||
				!src.LastModified.Equal(aws.ToTime(head.LastModified)) || src.ETag != aws.ToString(head.ETag) ||
				string(ch.Metadata) != `{"cost_center":"42","department":"legal","owner":"ops","team":"quay","year":2024}` {
				t.Fatalf("chunk %s %d: source %+v, metadata %s", ch.Key, ch.Index, src, ch.Metadata)
			}
		case "meta/wiki.txt":
			if src == nil || src.URI != "https://intranet.example/wiki/berths" || string(ch.Metadata) != `{"_category":"wiki","department":"ops","team":"quay"}` {
				t.Fatalf("chunk %s %d: source %+v, metadata %s", ch.Key, ch.Index, src, ch.Metadata)
			}
		default:
			t.Fatalf("a chunk of %s: sidecars and excluded objects are not documents", ch.Key)
		}
	}
	metadataOnlyChange(t, ctx, s, org, c, request, first)
	// The report excluded now: the sync's sweep takes it out.
	job = indexFile(t, ctx, s, org, "/v2/collections/meta/index/s3/directory", map[string]any{"directory_path": "meta/",
		"exclude_patterns": []string{"*.log", "report.*"}, "allow_mass_delete": true})
	if st, err = s.WaitJob(ctx, org, job, nil); err != nil {
		t.Fatal(err)
	}
	if st.Sweep == nil || st.Sweep.Excluded != 1 || st.FilesExcluded != 2 {
		t.Fatalf("sync %+v sweep %+v", st, st.Sweep)
	}
	if view, err := collections.Fold(ctx, js, org.OrgID, "meta", false); err != nil || len(view.Visible()) != 1 {
		t.Fatalf("%d documents' chunks visible after the exclusion, want the wiki's 1 (%v)", len(view.Visible()), err)
	}
	appendReport("metadata and filters on MinIO: chunks carry s3:// URI, MinIO's Last-Modified, size and {department: legal, cost_center: 42} over the job's " +
		"custom metadata, a Bedrock sidecar's attributes over both, a Kendra sidecar's _source_uri as the URI; sidecars are not documents; *.log counted " +
		"excluded; a copy in place with new user metadata (same ETag) and a changed sidecar reached the chunks on a skip_existing run (files_metadata_updated 1, " +
		"the same chunk IDs, nothing extracted); a sync excluding the report removed it (sweep.excluded 1)")
}

// metadataOnlyChange copies the report onto itself with new user metadata
// (department=finance; MinIO keeps the ETag, not the time) and rewrites its
// sidecar, then runs the job again (skip_existing): the report's chunks are
// published again with the new metadata under the same IDs, nothing is
// extracted, and the wiki page is left alone.
func metadataOnlyChange(t *testing.T, ctx context.Context, s *stack.Stack, org *stack.Org, c *s3.Client, request map[string]any, first []*schema.Chunk) {
	t.Helper()
	before, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("demo-docs"), Key: aws.String("meta/report.txt")})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // Last-Modified has one-second resolution
	if _, err := c.CopyObject(ctx, &s3.CopyObjectInput{Bucket: aws.String("demo-docs"), Key: aws.String("meta/report.txt"), CopySource: aws.String("demo-docs/meta/report.txt"),
		MetadataDirective: types.MetadataDirectiveReplace, Metadata: map[string]string{"department": "finance"}}); err != nil {
		t.Fatal(err)
	}
	after, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("demo-docs"), Key: aws.String("meta/report.txt")})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(after.ETag) != aws.ToString(before.ETag) {
		t.Fatalf("MinIO changed the ETag on a copy in place (%s → %s): not the case under test", aws.ToString(before.ETag), aws.ToString(after.ETag))
	}
	if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("demo-docs"), Key: aws.String("meta/report.txt.metadata.json"),
		Body: strings.NewReader(`{"metadataAttributes": {"year": 2025}}`)}); err != nil {
		t.Fatal(err)
	}
	job := indexFile(t, ctx, s, org, "/v2/collections/meta/index/s3/directory", request)
	st, err := s.WaitJob(ctx, org, job, nil)
	if err != nil {
		t.Fatal(err)
	}
	if st.FilesIndexed != 1 || st.FilesMetadataUpdated != 1 || st.FilesSkipped != 1 || st.FilesFailed != 0 {
		t.Fatalf("metadata-only run %+v", st)
	}
	ids := map[string]string{}
	for _, ch := range first {
		ids[ch.ChunkID] = ch.Text
	}
	now := visibleChunks(t, ctx, s, org.OrgID)
	if len(now) != len(first) {
		t.Fatalf("%d chunks visible, %d before", len(now), len(first))
	}
	for _, ch := range now {
		if text, ok := ids[ch.ChunkID]; !ok || text != ch.Text {
			t.Fatalf("chunk %s is not one published before", ch.ChunkID)
		}
		if ch.Key == "meta/report.txt" && (string(ch.Metadata) != `{"department":"finance","team":"quay","year":2025}` || !ch.Source.LastModified.Equal(aws.ToTime(after.LastModified))) {
			t.Fatalf("report chunk %d: metadata %s, source %+v", ch.Index, ch.Metadata, ch.Source)
		}
	}
}

// visibleChunks are the chunks of collection meta a consumer folding
// CHUNKS shows.
func visibleChunks(t *testing.T, ctx context.Context, s *stack.Stack, org string) []*schema.Chunk {
	t.Helper()
	view, err := collections.Fold(ctx, jetStream(t, s.NATSURL), org, "meta", true)
	if err != nil {
		t.Fatal(err)
	}
	chunks := view.VisibleChunks()
	if len(chunks) == 0 {
		t.Fatal("no chunks")
	}
	return chunks
}
