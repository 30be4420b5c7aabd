package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/schema/jobs"
	"github.com/stevedore-dev/stevedore/schema/natstest"
	"github.com/stevedore-dev/stevedore/schema/registry/registrytest"
)

func TestJobListShowCancel(t *testing.T) {
	srv, _, js := natstest.Start(t)
	ctx := context.Background()
	store, err := jobs.Open(ctx, js, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, id := range []string{"job_old", "job_new"} {
		job := &schema.Job{JobID: id, Org: "org_1", Collection: "docs", Kind: schema.JobBucket, Bucket: "b", CreatedAt: time.Now().Add(time.Duration(i) * time.Second)}
		if err := store.Create(ctx, schema.NewJobStatus(job)); err != nil {
			t.Fatal(err)
		}
	}
	cli, out := cliJSON(t, ctx, srv.ClientURL())
	list := cli("job", "list", "--org", "org_1")
	got := list["jobs"].([]any)
	if len(got) != 2 || got[0].(map[string]any)["job_id"] != "job_new" {
		t.Fatalf("list %v", list)
	}
	if c := cli("job", "cancel", "--org", "org_1", "--id", "job_new"); c["job"].(map[string]any)["status"] != schema.JobStatusCancelled {
		t.Fatalf("cancel %v", c)
	}
	// show --wait returns once the job is final (it is, cancelled): the job
	// is printed, and the exit code says it did not succeed.
	if s := cli("job", "show", "--org", "org_1", "--id", "job_new"); s["job"].(map[string]any)["status"] != schema.JobStatusCancelled {
		t.Fatalf("show %v", s)
	}
	err = run(ctx, []string{"job", "show", "--org", "org_1", "--id", "job_new", "--wait", "--json", "--nats-url", srv.ClientURL()})
	if exitCode(err) != exitJobUnsuccessful || !strings.Contains(out.String(), schema.JobStatusCancelled) {
		t.Fatalf("show --wait of a cancelled job: %v (exit %d), printed %s", err, exitCode(err), out.String())
	}
	if err := run(ctx, []string{"job", "list", "--org", "org_1", "--status", "bogus", "--nats-url", srv.ClientURL()}); exitCode(err) != exitUsage {
		t.Fatalf("job list --status bogus: %v (exit %d)", err, exitCode(err))
	}
	// A job still running when --timeout runs out: exit 1, saying so.
	running := schema.NewJobStatus(&schema.Job{JobID: "job_run", Org: "org_1", Collection: "docs", Kind: schema.JobBucket, Bucket: "b", CreatedAt: time.Now()})
	running.Status = schema.JobStatusRunning
	if err := store.Create(ctx, running); err != nil {
		t.Fatal(err)
	}
	err = run(ctx, []string{"job", "show", "--org", "org_1", "--id", "job_run", "--wait", "--timeout", "300ms", "--json", "--nats-url", srv.ClientURL()})
	if exitCode(err) != exitRuntime || !strings.Contains(fmt.Sprint(err), "still running after --timeout") {
		t.Fatalf("show --wait --timeout of a running job: %v (exit %d)", err, exitCode(err))
	}
	if err := run(ctx, []string{"job", "show", "--org", "org_2", "--id", "job_new", "--nats-url", srv.ClientURL()}); err == nil {
		t.Fatal("another org's job shown")
	}
}

func TestProgressLines(t *testing.T) {
	eta := 12.0
	listed := &schema.JobStatus{Status: schema.JobStatusRunning, FilesTotal: 10, FilesIndexed: 4, FilesSkipped: 1, LastPage: 0, PagesPlanned: 1}
	v := schema.JobView{JobStatus: listed, Progress: 0.5, EstimatedTimeRemainingSeconds: &eta}
	if line := progressLine(v); !strings.HasPrefix(line, " 50%  running: 5/10 files") || !strings.Contains(line, "about 12s left") {
		t.Fatalf("line %q", line)
	}
	listing := *listed
	listing.LastPage = -1
	if line := progressLine(schema.JobView{JobStatus: &listing}); !strings.HasPrefix(line, "listing…  running: 10 files so far") {
		t.Fatalf("while listing: %q", line)
	}
	// The terminal's bar: "listing…" with a count until the listing is
	// planned, then a bar with the rate; never wider than the terminal.
	var b bytes.Buffer
	started := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	st := &schema.JobStatus{Status: schema.JobStatusRunning, FilesTotal: 400, FilesIndexed: 120, LastPage: -1, PagesPlanned: 3, StartedAt: &started}
	bar := drawBar(nil, &b, st, started.Add(10*time.Second))
	if !strings.Contains(b.String(), "listing… 12.0 files/s") || !strings.Contains(b.String(), "(120/-)") {
		t.Fatalf("listing: %q", b.String())
	}
	st.LastPage, st.PagesPlanned, st.FilesIndexed = 3, 4, 300
	b.Reset()
	drawBar(bar, &b, st, started.Add(20*time.Second))
	if out := b.String(); !strings.Contains(out, "running 15.0 files/s, 6s left") || !strings.Contains(out, " 75% |") || !strings.Contains(out, "(300/400)") {
		t.Fatalf("planned: %q", out)
	}
	// Not a terminal: one line per change, no carriage returns; it returns
	// once the job is final.
	_, _, js := natstest.Start(t)
	ctx := context.Background()
	store, _ := jobs.Open(ctx, js, nil)
	st = schema.NewJobStatus(&schema.Job{JobID: "job_run", Org: "org_1", Collection: "docs", CreatedAt: time.Now()})
	st.Status, st.FilesTotal = schema.JobStatusRunning, 2
	if err := store.Create(ctx, st); err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(300 * time.Millisecond)
		_, _ = store.Cancel(ctx, "org_1", "job_run")
	}()
	var lines bytes.Buffer
	final, err := showJob(ctx, store, "org_1", "job_run", true, progress{w: &lines, tty: false})
	if err != nil || final.Status != schema.JobStatusCancelled {
		t.Fatalf("%v %+v", err, final)
	}
	if strings.Contains(lines.String(), "\r") || !strings.Contains(lines.String(), "listing…  running: 2 files so far") {
		t.Fatalf("progress output %q", lines.String())
	}
}

func TestOrgAPIKeyAuditCommands(t *testing.T) {
	srv, _, _ := natstest.Start(t)
	ctx := context.Background()
	cli, out := cliJSON(t, ctx, srv.ClientURL())
	org := cli("org", "create", "--name", "Acme")["org_id"].(string)
	key := cli("apikey", "create", "--org", org)
	if !strings.HasPrefix(key["api_key"].(string), "stv_") {
		t.Fatalf("apikey create %v", key)
	}
	if keys := cli("apikey", "list", "--org", org)["api_keys"].([]any); len(keys) != 2 {
		t.Fatalf("apikey list %v", keys)
	}
	if r := cli("apikey", "revoke", "--org", org, "--id", key["key_id"].(string)); r["revoked"] != true {
		t.Fatalf("revoke %v", r)
	}
	if d := cli("org", "disable", "--org", org); d["disabled"] != true {
		t.Fatalf("disable %v", d)
	}
	if orgs := cli("org", "list")["orgs"].([]any); len(orgs) != 1 || orgs[0].(map[string]any)["disabled"] != true {
		t.Fatalf("org list %v", orgs)
	}
	if e := cli("org", "enable", "--org", org); e["disabled"] != false {
		t.Fatalf("enable %v", e)
	}
	recs := cli("audit", "tail", "--org", org)["records"].([]any)
	var actions []string
	for _, r := range recs {
		actions = append(actions, r.(map[string]any)["action"].(string))
	}
	if strings.Join(actions, " ") != "apikey.create org.create apikey.create apikey.revoke org.disable org.enable" {
		t.Fatalf("audit tail: %v", actions)
	}
	if strings.Contains(out.String(), key["api_key"].(string)) {
		t.Fatal("an API key in the audit trail")
	}
}

func TestProcessMetrics(t *testing.T) {
	_, nc, js := natstest.Start(t)
	reg := prometheus.NewPedanticRegistry()
	processMetrics(reg, nc, js)
	ctx := context.Background()
	job, _ := schema.Encode(&schema.Job{JobID: "job_1", Org: "org_1", Collection: "docs", IntegrationID: "int_1", Kind: schema.JobBucket, Bucket: "b", CreatedAt: time.Now()})
	if _, err := js.Publish(ctx, schema.JobSubject("org_1", "docs"), job); err != nil {
		t.Fatal(err)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			name := f.GetName()
			for _, l := range m.GetLabel() {
				name += "/" + l.GetValue()
			}
			got[name] = m.GetGauge().GetValue()
		}
	}
	age, aged := got["stevedore_queue_oldest_message_age_seconds/JOBS"]
	_, tasksReported := got["stevedore_queue_pending_messages/TASKS"]
	if got["stevedore_nats_connected"] != 1 || got["stevedore_queue_pending_messages/JOBS"] != 1 || !tasksReported ||
		got["stevedore_queue_pending_messages/TASKS"] != 0 || !aged || age <= 0 || age > 60 || got["stevedore_queue_oldest_message_age_seconds/TASKS"] != 0 {
		t.Fatalf("metrics %v", got)
	}
	// How full the limited streams are, and the tracker's backlog.
	if max, ok := got["stevedore_stream_max_bytes/CHUNKS"]; !ok || max <= 0 {
		t.Fatalf("no CHUNKS byte limit: %v", got)
	}
	if _, ok := got["stevedore_stream_bytes/CHUNKS"]; !ok {
		t.Fatalf("no CHUNKS bytes: %v", got)
	}
	if _, ok := got["stevedore_tracker_pending_events"]; !ok {
		t.Fatalf("no tracker backlog: %v", got)
	}
	var build bool
	for k := range got {
		build = build || strings.HasPrefix(k, "stevedore_build_info/")
	}
	if !build {
		t.Fatalf("no build_info: %v", got)
	}
}

// Usage errors exit 2, runtime errors 1, -h 0: scripts can tell them apart.
func TestExitCodes(t *testing.T) {
	ctx := context.Background()
	stdout = io.Discard
	t.Cleanup(func() { stdout = nil })
	for _, c := range []struct {
		args []string
		want int
	}{
		{[]string{"no-such-command"}, exitUsage},
		{[]string{"job", "no-such-verb"}, exitUsage},
		{[]string{"worker", "--no-such-flag"}, exitUsage},
		{[]string{"job", "show", "--timeout", "soon"}, exitUsage},
		{[]string{"job", "show", "--org", "o", "extra"}, exitUsage},
		{[]string{"worker", "--log-level", "verbose"}, exitUsage},
		// A required flag is missing: refused before connecting (this NATS URL is dead).
		{[]string{"org", "create", "--nats-url", "nats://127.0.0.1:1"}, exitUsage},
		{[]string{"integration", "add", "--org", "o", "--nats-url", "nats://127.0.0.1:1"}, exitUsage},
		{[]string{"job", "show", "--org", "o", "--id", "j", "--nats-url", "nats://127.0.0.1:1"}, exitRuntime},
	} {
		err := run(ctx, c.args)
		if err == nil || exitCode(err) != c.want {
			t.Errorf("%v: %v, exit %d; want exit %d", c.args, err, exitCode(err), c.want)
		}
	}
	if err := run(ctx, []string{"job", "show", "-h"}); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: %v", err)
	}
}

// schedule set, show, list and clear against a tenant's verified
// integration; a pattern the server refuses is a usage error; an unknown
// integration is refused.
func TestScheduleCommands(t *testing.T) {
	tf := registrytest.Tenant(t)
	ctx := context.Background()
	url := tf.JS.Conn().ConnectedUrl()
	cli, _ := cliJSON(t, ctx, url)
	base := []string{"--org", tf.Org.ID, "--collection", "docs"}
	set := append([]string{"schedule", "set", "--integration", tf.In.ID, "--bucket", "acme-docs", "--prefix", "reports/", "--every", "6h"}, base...)
	out := cli(set...)
	sc := out["schedule"].(map[string]any)
	if sc["every"] != "6h" || sc["job"].(map[string]any)["prefix"] != "reports/" || sc["job"].(map[string]any)["delete_missing"] != true {
		t.Fatalf("set %v", out)
	}
	if s := cli(append([]string{"schedule", "show"}, base...)...); s["schedule"].(map[string]any)["collection"] != "docs" {
		t.Fatalf("show %v", s)
	}
	if l := cli("schedule", "list", "--org", tf.Org.ID); len(l["schedules"].([]any)) != 1 {
		t.Fatalf("list %v", l)
	}
	bad := append([]string{"schedule", "set", "--integration", tf.In.ID, "--bucket", "acme-docs", "--cron", "whenever", "--nats-url", url}, base...)
	if err := run(ctx, bad); exitCode(err) != exitUsage {
		t.Fatalf("bad cron: %v (exit %d)", err, exitCode(err))
	}
	other := append([]string{"schedule", "set", "--integration", "int_nope", "--bucket", "acme-docs", "--every", "1h", "--nats-url", url}, base...)
	if err := run(ctx, other); err == nil {
		t.Fatal("a schedule through an unknown integration was set")
	}
	cli(append([]string{"schedule", "clear"}, base...)...)
	if err := run(ctx, append([]string{"schedule", "show", "--nats-url", url}, base...)); err == nil {
		t.Fatal("a cleared schedule shown")
	}
}
