//go:build e2e

package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestCaptainExampleClient runs Captain's own example client (seed 000,
// step 4; scripts/captain_client.py), unchanged except for URL, key and
// IDs, against `stevedore dev` on MinIO: bucket, directory and file jobs,
// then list, cancel and poll through the job endpoints. It needs Python 3
// with requests (preinstalled with moto on our CI image).
func TestCaptainExampleClient(t *testing.T) {
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
