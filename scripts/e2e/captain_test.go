//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stevedore-dev/stevedore/schema/collections"
	"github.com/stevedore-dev/stevedore/scripts/stack"
)

// TestCaptainExampleClient runs Captain's own example client (seed 000,
// step 4; scripts/captain_client.py), unchanged except for URL, key and
// IDs, against `stevedore dev` on MinIO: bucket, directory and file jobs,
// then list, cancel and poll through the job endpoints. It needs Python 3
// with requests (preinstalled with moto on our CI image).
func TestCaptainExampleClient(t *testing.T) {
	t.Parallel() // mostly waits on its own stack: runs beside the others that do (package doc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	s, org, _ := startOnboarded(t, ctx, "Captain client")
	cmd := exec.CommandContext(ctx, "python3", filepath.Join(s.Root, "scripts", "captain_client.py"))
	cmd.Env = append(os.Environ(), "STEVEDORE_URL="+s.API, "STEVEDORE_API_KEY="+org.APIKey, "STEVEDORE_ORG_ID="+org.OrgID,
		"STEVEDORE_BUCKET=demo-docs", "STEVEDORE_ROLE_ARN="+roleARN, "STEVEDORE_EXTERNAL_ID="+org.ExternalID)
	out, err := cmd.CombinedOutput()
	t.Logf("captain_client.py:\n%s", out)
	if err != nil {
		t.Fatalf("python3 scripts/captain_client.py: %v (needs Python 3 with requests)", err)
	}
	text := string(out)
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^Job started! ID: job_\w+$`),
		regexp.MustCompile(`(?m)^Directory job started! ID: job_\w+$`),
		regexp.MustCompile(`(?m)^File job started! ID: job_\w+$`),
		regexp.MustCompile(`(?m)^Cancel job_\w+: 200 cancelled$`),
		regexp.MustCompile(`(?m)^Jobs, newest first: job_\w+ cancelled, `),
		regexp.MustCompile(`(?m)^Job job_\w+: completed, \d+ indexed, \d+ skipped, 0 failed of \d+; \d+ chunks, \d+ tokens; progress 1`),
		regexp.MustCompile(`(?m)^Job job_\w+: cancelled, `),
	} {
		if !want.MatchString(text) {
			t.Fatalf("output lacks %s", want)
		}
	}
	if strings.Count(text, ": completed,") != 3 {
		t.Fatalf("want the bucket, directory and file jobs completed")
	}
	appendReport("Captain's example client against stevedore dev:\n" + strings.TrimSpace(text))
}

// TestCaptainCollections runs Captain's collection and document calls
// (scripts/captain_collections.py) against `stevedore dev` with the demo
// bucket: the collection listed with its documents, one document shown with
// its chunks in order and deleted — a consumer folding CHUNKS then sees none
// of its chunks and all the others' — then the collection wiped and
// deleted: none at all. Another organization gets 404 for every call.
func TestCaptainCollections(t *testing.T) {
	t.Parallel() // mostly waits on its own stack: runs beside the others that do (package doc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	s, org, _ := startOnboarded(t, ctx, "Captain collections")
	var other stack.Org
	if err := s.CLI(ctx, &other, "org", "create", "--name", "Someone else"); err != nil {
		t.Fatal(err)
	}
	run := func(phase string) string {
		cmd := exec.CommandContext(ctx, "python3", filepath.Join(s.Root, "scripts", "captain_collections.py"), phase)
		cmd.Env = append(os.Environ(), "STEVEDORE_URL="+s.API, "STEVEDORE_API_KEY="+org.APIKey, "STEVEDORE_ORG_ID="+org.OrgID,
			"STEVEDORE_BUCKET=demo-docs", "STEVEDORE_ROLE_ARN="+roleARN, "STEVEDORE_EXTERNAL_ID="+org.ExternalID,
			"OTHER_API_KEY="+other.APIKey, "OTHER_ORG_ID="+other.OrgID)
		out, err := cmd.CombinedOutput()
		t.Logf("captain_collections.py %s:\n%s", phase, out)
		if err != nil {
			t.Fatalf("python3 scripts/captain_collections.py %s: %v (needs Python 3 with requests)", phase, err)
		}
		return string(out)
	}
	js := jetStream(t, s.NATSURL)
	fold := func() map[string]int {
		view, err := collections.Fold(ctx, js, org.OrgID, "demo_docs", true)
		if err != nil {
			t.Fatal(err)
		}
		keys := map[string]int{}
		for _, c := range view.VisibleChunks() {
			keys[c.Key]++
		}
		return keys
	}

	first := run("index")
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^Create collection: 201 demo_docs$`),
		regexp.MustCompile(`(?m)^Index job: completed, \d+ indexed`),
		regexp.MustCompile(`(?m)^Collection demo_docs \(col_\w+\): \d+ documents, \d+ chunks, \d+ tokens$`),
		regexp.MustCompile(`(?m)^Document \w{32} s3://demo-docs/\S+: \d+ chunks shown in order`),
		regexp.MustCompile(`(?m)^Another organization: 404 for every call`),
		regexp.MustCompile(`(?m)^Delete document \w{32}: completed, 1 deleted, \d+ chunks tombstoned$`),
		regexp.MustCompile(`(?m)^Get the deleted document: 404$`),
	} {
		if !want.MatchString(first) {
			t.Fatalf("output lacks %s", want)
		}
	}
	deleted := regexp.MustCompile(`(?m)^DELETED (.+)$`).FindStringSubmatch(first)[1]
	keys := fold()
	if keys[deleted] != 0 || len(keys) == 0 {
		t.Fatalf("after the document delete a consumer sees %d chunks of %s (and %d documents)", keys[deleted], deleted, len(keys))
	}
	docs := len(keys)

	second := run("delete")
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^Wipe: completed, (\d+) of (\d+) documents deleted$`),
		regexp.MustCompile(`(?m)^After the wipe: 0 documents, 0 chunks; collection active$`),
		regexp.MustCompile(`(?m)^Delete collection: completed, 0 deleted$`),
		regexp.MustCompile(`(?m)^Get the deleted collection: 404$`),
	} {
		if !want.MatchString(second) {
			t.Fatalf("output lacks %s", want)
		}
	}
	if m := regexp.MustCompile(`Wipe: completed, (\d+) of (\d+)`).FindStringSubmatch(second); m[1] != m[2] {
		t.Fatalf("the wipe deleted %s of %s", m[1], m[2])
	}
	if left := fold(); len(left) != 0 {
		t.Fatalf("after the wipe and delete a consumer sees chunks of %d documents", len(left))
	}
	appendReport(fmt.Sprintf("Captain's collection and document calls against stevedore dev (%d documents with visible chunks before the wipe):\n%s%s",
		docs, strings.TrimSpace(first), "\n"+strings.TrimSpace(second)))
}
