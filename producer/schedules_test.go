package producer

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// A schedule over the API: checked as an index request is, plus its own
// bounds; set, shown (without the credential reference), listed, replaced
// and cleared.
func TestSchedules(t *testing.T) {
	f := setup(t)
	path := "/v2/collections/docs/schedule"
	for _, tc := range []struct {
		name, body string
		status     int
		code       string
	}{
		{"too often", f.body(`,"every":"1m"`), 400, "invalid_schedule"},
		{"bad cron", f.body(`,"cron":"at noon"`), 400, "invalid_schedule"},
		{"neither", f.body(``), 400, "invalid_schedule"},
		{"a file", f.body(`,"every":"1h","file_uri":"s3://acme-docs/a.txt"`), 400, "invalid_option"},
		{"stale before due", f.body(`,"every":"6h","stale_after":"1h"`), 400, "invalid_stale_after"},
		{"wrong external id", `{"bucket_name":"acme-docs","every":"1h","auth":{"type":"assume_role","role_arn":"` + role + `","external_id":"cap_org_000000000000000000000000"}}`, 403, "external_id_mismatch"},
	} {
		if code, out := f.do(t, "PUT", path, tc.body, nil); code != tc.status || errCode(out) != tc.code {
			t.Errorf("%s: %d %v", tc.name, code, out)
		}
	}
	if code, out := f.do(t, "GET", path, "", nil); code != 404 || errCode(out) != "schedule_not_found" {
		t.Fatalf("no schedule yet: %d %v", code, out)
	}
	code, out := f.do(t, "PUT", path, f.body(`,"directory_path":"reports/","every":"6h","custom_metadata":{"team":"a"}`), nil)
	job, _ := out["job"].(map[string]any)
	if code != 200 || out["every"] != "6h" || out["stale_after_seconds"] != 43200.0 || job["kind"] != "directory" || job["prefix"] != "reports/" ||
		job["delete_missing"] != true || job["credential_ref"] != nil {
		t.Fatalf("set: %d %v", code, out)
	}
	if code, out := f.do(t, "PUT", path, f.body(`,"cron":"0 0 3 * * *","time_zone":"Europe/Berlin"`), nil); code != 200 || out["cron"] != "0 0 3 * * *" || out["every"] != nil {
		t.Fatalf("replace: %d %v", code, out)
	}
	if code, out := f.do(t, "GET", "/v2/schedules", "", nil); code != 200 || len(out["schedules"].([]any)) != 1 {
		t.Fatalf("list: %d %v", code, out)
	}
	if code, _ := f.do(t, "DELETE", path, "", nil); code != 204 {
		t.Fatalf("clear: %d", code)
	}
	if code, out := f.do(t, "DELETE", path, "", nil); code != 404 || errCode(out) != "schedule_not_found" {
		t.Fatalf("clear again: %d %v", code, out)
	}
}

// The staleness metrics: a 6h schedule that never synced is fresh for 12
// hours, then stale; its class is daily.
func TestScheduleStaleness(t *testing.T) {
	f := setup(t)
	if code, out := f.do(t, "PUT", "/v2/collections/docs/schedule", f.body(`,"every":"6h"`), nil); code != 200 {
		t.Fatalf("set: %d %v", code, out)
	}
	for _, tc := range []struct {
		after time.Duration
		stale string
	}{{11 * time.Hour, "0"}, {13 * time.Hour, "1"}} {
		s := newStaleness(f.api.schedules, func() time.Time { return time.Now().Add(tc.after) })
		want := `
# HELP stevedore_schedules_stale Schedules of the class whose last successful sync is older than their stale threshold (default 2 × the interval).
# TYPE stevedore_schedules_stale gauge
stevedore_schedules_stale{class="daily"} ` + tc.stale + `
stevedore_schedules_stale{class="hourly"} 0
stevedore_schedules_stale{class="monthly"} 0
stevedore_schedules_stale{class="weekly"} 0
`
		if err := testutil.CollectAndCompare(s, strings.NewReader(want), "stevedore_schedules_stale"); err != nil {
			t.Errorf("%s after: %v", tc.after, err)
		}
	}
}
