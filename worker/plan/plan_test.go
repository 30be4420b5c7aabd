package plan

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/schema/jobs"
	"github.com/stevedore-dev/stevedore/worker/creds/awstest"
	"github.com/stevedore-dev/stevedore/worker/handlertest"
	"github.com/stevedore-dev/stevedore/worker/meter"
)

const bucket = handlertest.Bucket

// planner is a Handler on a real registry, STS and S3 (awstest) and job
// records, whose publishes are collected instead of sent.
type planner struct {
	h     *Handler
	store *jobs.Store
	job   schema.Job
	out   [][]schema.Out
}

func newPlanner(t *testing.T, keys ...string) *planner {
	t.Helper()
	e := handlertest.Start(t)
	for _, k := range keys {
		body := "body of " + k
		if strings.HasSuffix(k, "/") {
			body = "" // a directory marker
		}
		e.S3.Put(bucket, k, body)
	}
	p := &planner{store: e.Jobs, job: schema.Job{JobID: "job_plan", Org: e.Org.ID, Collection: "docs", IntegrationID: e.In.ID,
		Kind: schema.JobBucket, Bucket: bucket, Region: "us-east-1", CreatedAt: time.Now()}}
	var err error
	p.h, err = New(Config{Metrics: meter.New(nil), Resolver: e.Resolver, Jobs: e.Jobs.Cache(), PageSize: 2,
		Publish: func(ctx context.Context, msgs []schema.Out) error { p.out = append(p.out, msgs); return nil }})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Jobs.Create(context.Background(), schema.NewJobStatus(&p.job)); err != nil {
		t.Fatal(err)
	}
	return p
}

// page plans job and returns its tasks' keys, the next page (nil: none)
// and the planned event.
func (p *planner) page(t *testing.T, job *schema.Job) (keys []string, next *schema.Job, ev *schema.JobEvent) {
	t.Helper()
	keys, pages, ev := p.pages(t, job)
	if len(pages) > 0 {
		next = pages[0]
	}
	return keys, next, ev
}

// pages plans job and returns its tasks' keys, the pages it published (two
// when its lane split) and the planned event.
func (p *planner) pages(t *testing.T, job *schema.Job) (keys []string, next []*schema.Job, ev *schema.JobEvent) {
	t.Helper()
	data, _ := schema.Encode(job)
	if err := p.h.Handle(context.Background(), handlertest.Msg{Body: data}); err != nil {
		t.Fatal(err)
	}
	for _, o := range p.out[len(p.out)-1] {
		if task := taskOf(t, o); task != nil {
			keys = append(keys, task.Key)
		}
		switch m := o.Msg.(type) {
		case *schema.Job:
			next = append(next, m)
		case *schema.JobEvent:
			ev = m
		}
	}
	return keys, next, ev
}

// taskOf is the task o publishes (a listing's are encoded already, as the
// wire carries them), or nil.
func taskOf(t *testing.T, o schema.Out) *schema.Task {
	t.Helper()
	if o.Data == nil {
		task, _ := o.Msg.(*schema.Task)
		return task
	}
	task, err := schema.DecodeTask(o.Data)
	if err != nil {
		t.Fatalf("%s: %v", o.Data, err)
	}
	return task
}

// A bucket is planned a page at a time: each page's tasks (directory
// markers left out), the next page while the listing goes on, and a
// "planned" event saying how many tasks and whether it was the last.
func TestPlanPages(t *testing.T) {
	p := newPlanner(t, "a.txt", "b.txt", "dir/", "dir/c.txt", "d.txt")
	job := p.job
	var all []string
	for page := 0; ; page++ {
		keys, next, ev := p.page(t, &job)
		if ev == nil || ev.Page != page || ev.Tasks != len(keys) || ev.Last != (next == nil) {
			t.Fatalf("page %d: event %+v for %d tasks, next %v", page, ev, len(keys), next != nil)
		}
		all = append(all, keys...)
		if next == nil {
			break
		}
		job = *next
	}
	if got := strings.Join(all, ","); got != "a.txt,b.txt,d.txt,dir/c.txt" {
		t.Fatalf("planned %s", got)
	}
}

// max_files ends planning at the count, mid-listing.
func TestPlanStopsAtMaxFiles(t *testing.T) {
	p := newPlanner(t, "a.txt", "b.txt", "c.txt", "d.txt", "e.txt")
	job := p.job
	job.MaxFiles = 3
	keys, next, _ := p.page(t, &job)
	if len(keys) != 2 || next == nil {
		t.Fatalf("page 0: %v, next %v", keys, next)
	}
	keys, next, ev := p.page(t, next)
	if len(keys) != 1 || next != nil || !ev.Last {
		t.Fatalf("page 1: %v, next %v, event %+v", keys, next, ev)
	}
}

// A cancelled job's page plans nothing.
func TestPlanCancelledJobPublishesNothing(t *testing.T) {
	p := newPlanner(t, "a.txt")
	if _, err := p.store.Cancel(context.Background(), p.job.Org, p.job.JobID); err != nil {
		t.Fatal(err)
	}
	data, _ := schema.Encode(&p.job)
	if err := p.h.Handle(context.Background(), handlertest.Msg{Body: data}); err != nil || len(p.out) != 0 {
		t.Fatalf("err %v, published %v", err, p.out)
	}
}

// Giving a page up fails its job with the reason, class, code and hint.
func TestPlanGiveUpFailsTheJob(t *testing.T) {
	p := newPlanner(t)
	data, _ := schema.Encode(&p.job)
	out, err := p.h.GiveUp(data, &schema.ClassError{Err: fmt.Errorf("AccessDenied"), Class: schema.ClassTenantAuth, Code: schema.CodeAssumeRoleDenied, Hint: "check the trust policy"})
	if err != nil {
		t.Fatal(err)
	}
	ev, ok := out[0].Msg.(*schema.JobEvent)
	if len(out) != 1 || !ok || ev.Type != schema.JobFailed || ev.ErrorClass != string(schema.ClassTenantAuth) || ev.ErrorCode != schema.CodeAssumeRoleDenied || ev.Hint == "" {
		t.Fatalf("give-up outcome %+v", out)
	}
	if out, err := p.h.GiveUp([]byte("not json"), &schema.ClassError{Err: fmt.Errorf("x"), Class: schema.ClassPermanent}); len(out) != 0 || err != nil {
		t.Fatalf("an undecodable page has no job to fail: %+v", out)
	}
}

// A job's filters leave objects out of its listing: counted on the planned
// event (excluded), no task for them.
func TestPlanFilters(t *testing.T) {
	p := newPlanner(t, "a.txt", "app.log", "logs/b.log", "reports/q3.pdf", "reports/tmp/x.pdf", "reports/a-much-longer-name.txt")
	job := p.job
	job.Filters = &schema.Filters{Exclude: []string{"*.log", "reports/tmp/**"}, MaxFileSize: 22}
	var all []string
	excluded := 0
	for {
		keys, next, ev := p.page(t, &job)
		all = append(all, keys...)
		excluded += ev.Excluded
		if next == nil {
			break
		}
		job = *next
	}
	// "body of reports/q3.pdf" is 22 bytes; the long name's body is over.
	if strings.Join(all, ",") != "a.txt,reports/q3.pdf" || excluded != 4 {
		t.Fatalf("tasks %v, %d excluded", all, excluded)
	}
}

// Sidecars are not documents: no task of their own. A task says what the
// listing settled of its document's sidecar — its ETag, or that it has
// none — and leaves it open when the sidecar would sort after the page's
// last key (the worker asks S3 then). Pages of 2: [a.txt a.txt.metadata.json]
// [b.txt c.txt] [c.txt.metadata.json d.txt] [d.txt.metadata.json].
func TestPlanSettlesSidecars(t *testing.T) {
	p := newPlanner(t, "a.txt", "a.txt.metadata.json", "b.txt", "c.txt", "c.txt.metadata.json", "d.txt", "d.txt.metadata.json")
	// A record without lanes (as made before them): one lane, so the pages
	// are the listing's, two keys each. TestLanesListEveryKeyOnce checks
	// sidecars across lanes.
	p.job.JobID = "job_one_lane"
	st := schema.NewJobStatus(&p.job)
	st.Lanes = nil
	if err := p.store.Create(context.Background(), st); err != nil {
		t.Fatal(err)
	}
	job := p.job
	type seen struct {
		known bool
		etag  string
	}
	got := map[string]seen{}
	for {
		_, next, _ := p.page(t, &job)
		for _, o := range p.out[len(p.out)-1] {
			if task := taskOf(t, o); task != nil {
				got[task.Key] = seen{task.SidecarKnown, task.SidecarETag}
			}
		}
		if next == nil {
			break
		}
		job = *next
	}
	want := map[string]seen{
		"a.txt": {true, awstest.ETag("body of a.txt.metadata.json")},
		"b.txt": {true, ""},  // b.txt.metadata.json < c.txt, the page's last key
		"c.txt": {false, ""}, // c.txt.metadata.json sorts after the page: unknown
		"d.txt": {false, ""}, // and so does d.txt's
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("tasks %v, want %v", got, want)
	}
}

func TestListedSidecars(t *testing.T) {
	l := listedSidecars{etags: map[string]string{"a.metadata.json": `"e"`}, last: "m", more: true}
	for key, want := range map[string]bool{"a": true, "b": true, "m": false, "z": false} {
		if _, known := l.of(key); known != want {
			t.Errorf("%s: known %v", key, known)
		}
	}
	l.more = false
	if _, known := l.of("z"); !known {
		t.Error("the last page settles every key")
	}
}
