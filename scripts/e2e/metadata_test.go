//go:build e2e

package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/stevedore-dev/stevedore/schema/collections"
)

// TestMetadataAndFilters on MinIO: an object uploaded with S3 user metadata
// (department=legal) beside a .log; a directory job with custom_metadata
// and "exclude_patterns": ["*.log"]. The chunks carry the object's S3 URI,
// its last-modified time and size as MinIO answered, and the document's
// metadata (the job's overlaid by the object's); the log is counted
// excluded, not indexed. A sync that then excludes the report removes it.
func TestMetadataAndFilters(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	s, org, _ := startOnboarded(t, ctx, "Metadata")
	c := rootS3(s)
	body := strings.Repeat("The legal department's report on quay crane productivity. ", 20)
	if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("demo-docs"), Key: aws.String("meta/report.txt"), Body: strings.NewReader(body),
		Metadata: map[string]string{"department": "legal", "Cost-Center": "42"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("demo-docs"), Key: aws.String("meta/app.log"), Body: strings.NewReader("a log line\n")}); err != nil {
		t.Fatal(err)
	}
	head, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("demo-docs"), Key: aws.String("meta/report.txt")})
	if err != nil {
		t.Fatal(err)
	}
	job := indexFile(t, ctx, s, org, "/v2/collections/meta/index/s3/directory", map[string]any{"directory_path": "meta/",
		"custom_metadata": map[string]string{"team": "quay", "department": "ops"}, "exclude_patterns": []string{"*.log"}})
	st, err := s.WaitJob(ctx, org, job, nil)
	if err != nil {
		t.Fatal(err)
	}
	if st.FilesIndexed != 1 || st.FilesExcluded != 1 || st.FilesTotal != 1 {
		t.Fatalf("job %+v", st)
	}
	js := jetStream(t, s.NATSURL)
	view, err := collections.Fold(ctx, js, org.OrgID, "meta", true)
	if err != nil {
		t.Fatal(err)
	}
	chunks := view.VisibleChunks()
	if len(chunks) == 0 {
		t.Fatal("no chunks")
	}
	for _, ch := range chunks {
		src := ch.Source
		if ch.Key != "meta/report.txt" || src == nil || src.URI != "s3://demo-docs/meta/report.txt" || src.Size != int64(len(body)) ||
			src.LastModified == nil || !src.LastModified.Equal(aws.ToTime(head.LastModified)) || src.ETag != aws.ToString(head.ETag) ||
			string(ch.Metadata) != `{"cost_center":"42","department":"legal","team":"quay"}` {
			t.Fatalf("chunk %s %d: source %+v, metadata %s", ch.Key, ch.Index, src, ch.Metadata)
		}
	}
	// The report excluded now: the sync's sweep takes it out.
	job = indexFile(t, ctx, s, org, "/v2/collections/meta/index/s3/directory", map[string]any{"directory_path": "meta/",
		"exclude_patterns": []string{"*.log", "report.*"}, "allow_mass_delete": true})
	if st, err = s.WaitJob(ctx, org, job, nil); err != nil {
		t.Fatal(err)
	}
	if st.Sweep == nil || st.Sweep.Excluded != 1 || st.FilesExcluded != 2 {
		t.Fatalf("sync %+v sweep %+v", st, st.Sweep)
	}
	if view, err = collections.Fold(ctx, js, org.OrgID, "meta", false); err != nil || len(view.Visible()) != 0 {
		t.Fatalf("%d chunks visible after the exclusion (%v)", len(view.Visible()), err)
	}
	appendReport("metadata and filters on MinIO: chunks carry s3:// URI, MinIO's Last-Modified, size and {department: legal, cost_center: 42} over the job's custom metadata; *.log counted excluded; a sync excluding the report removed it (sweep.excluded 1)")
}
