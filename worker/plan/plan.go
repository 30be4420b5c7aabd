// Package plan is the handler of JOBS: it plans an index job one page at a
// time, listing up to PageSize keys with the tenant's role and publishing a
// task per object, the job's next page, and a "planned" event.
package plan

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/schema/jobs"
	"github.com/stevedore-dev/stevedore/worker/creds"
	"github.com/stevedore-dev/stevedore/worker/meter"
)

// PageSizeDefault is Config.PageSize's default.
const PageSizeDefault = 1000

// Config configures a Handler. Every field but PageSize and Logger is required.
type Config struct {
	// Publish publishes msgs and waits for every acknowledgement
	// (meter.Publisher.Publish in the worker).
	Publish  func(ctx context.Context, msgs []schema.Out) error
	Metrics  *meter.Metrics
	Resolver *creds.Resolver
	Jobs     *jobs.Cache
	// PageSize is ListObjectsV2 MaxKeys per job page; default 1000.
	PageSize int32
	Logger   *slog.Logger
}

// Handler plans JOBS pages; it is a runner.Handler. Giving a page up
// fails its job.
type Handler struct {
	cfg Config
	log *slog.Logger
}

// New returns a Handler.
func New(cfg Config) (*Handler, error) {
	if cfg.Publish == nil || cfg.Metrics == nil || cfg.Resolver == nil || cfg.Jobs == nil {
		return nil, errors.New("plan: Publish, Metrics, Resolver and Jobs are required")
	}
	cfg.PageSize = cmp.Or(cfg.PageSize, PageSizeDefault)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Handler{cfg: cfg, log: cfg.Logger}, nil
}

// Name is the stage label of the handler's metrics and logs.
func (h *Handler) Name() string { return "plan" }

// Handle plans one page of an index job: list up to PageSize keys, publish
// a task per object, the next page (or the first pages of two lanes, when
// the page splits its lane; see lanes.go), and a "planned" event. Every publish has a deterministic ID, so a crash anywhere in here
// followed by redelivery redoes the page without duplicating anything.
func (h *Handler) Handle(ctx context.Context, msg jetstream.Msg) error {
	job, err := schema.DecodeJob(msg.Data())
	if err != nil {
		return err
	}
	rec, _ := h.cfg.Jobs.Get(ctx, job.JobID) // unreadable now: planned as not cancelled, in one lane
	if rec.Cancelled {
		h.log.Info("job cancelled: page not planned", "org", job.Org, "job_id", job.JobID, "page", job.Page)
		return nil
	}
	return h.planPage(ctx, job, rec.Lanes && rec.LiveLanes < MaxLiveLanes)
}

// GiveUp is the planner's give-up outcome: the job failed, with why, so
// GET /v2/jobs shows it.
func (h *Handler) GiveUp(data []byte, f *schema.ClassError) ([]schema.Out, error) {
	job, err := schema.DecodeJob(data)
	if err != nil {
		return nil, nil // undecodable: no job to tell
	}
	ev := &schema.JobEvent{EventID: schema.JobFailedEventID(job.JobID), JobID: job.JobID, Org: job.Org, Collection: job.Collection,
		Type: schema.JobFailed, Page: job.Page, Reason: schema.Bound(creds.PublicMessage(f.Err)), ErrorClass: string(f.Class), ErrorCode: f.Code, Hint: f.Hint, At: time.Now().UTC()}
	return []schema.Out{{Subject: schema.JobEventSubject(job.Org, job.Collection), MsgID: ev.EventID, Msg: ev}}, nil
}

// planPage plans one page; split: the page's lane may split (the job's
// record keeps lanes, which a record from before lanes cannot, and has
// fewer than MaxLiveLanes at work).
func (h *Handler) planPage(ctx context.Context, job *schema.Job, split bool) error {
	scopeKey := job.Prefix
	if job.Kind == schema.JobFile {
		scopeKey = job.Key
	}
	t, err := h.cfg.Resolver.Tenant(ctx, job.Org, job.IntegrationID, job.Bucket, scopeKey)
	if err != nil {
		return err
	}
	t.CredentialRef = job.CredentialRef
	var out []schema.Out
	var next []*schema.Job
	var cut bool
	excluded := 0
	if job.Kind == schema.JobFile {
		task := baseTask(job)
		task.Key, task.ScopePrefix = job.Key, job.Key
		out = append(out, taskMsg(&task))
	} else if out, next, cut, excluded, err = h.listPage(ctx, t, job, split); err != nil {
		return err
	}
	tasks := len(out)
	ev := &schema.JobEvent{EventID: schema.LanePlannedEventID(job.JobID, job.Lane, job.Page), JobID: job.JobID, Org: job.Org, Collection: job.Collection,
		Type: schema.JobPlanned, Page: job.Page, Lane: job.Lane, Tasks: tasks, Excluded: excluded, Last: len(next) == 0, Cut: cut, At: time.Now().UTC()}
	for _, n := range next {
		out = append(out, schema.Out{Subject: schema.JobSubject(job.Org, job.Collection), MsgID: schema.LanePageMsgID(job.JobID, n.Lane, n.Page), Msg: n})
		if n.Lane != job.Lane {
			ev.Split = append(ev.Split, n.Lane)
		}
	}
	out = append(out, schema.Out{Subject: schema.JobEventSubject(job.Org, job.Collection), MsgID: ev.EventID, Msg: ev})
	if err := h.cfg.Publish(ctx, out); err != nil {
		return err
	}
	h.log.Info("page planned", "org", job.Org, "collection", job.Collection, "job_id", job.JobID, "lane", job.Lane, "page", job.Page, "tasks", tasks,
		"excluded", excluded, "last", len(next) == 0, "split", ev.Split)
	return nil
}

// listPage lists one page of a bucket or directory job: a task per object
// (directory markers and what the job's filters exclude left out, the
// latter counted), and the job's next page unless this one was the last
// (the listing ended, or max_files is reached: cut).
func (h *Handler) listPage(ctx context.Context, t *creds.Tenant, job *schema.Job, split bool) (tasks []schema.Out, next []*schema.Job, cut bool, excluded int, err error) {
	req, err := h.cfg.Resolver.Request(t, job.JobID, job.Bucket, job.Prefix)
	if err != nil {
		return nil, nil, false, 0, err
	}
	page, err := h.cfg.Resolver.ListObjects(ctx, t, req, job.Region, h.listInput(t, job))
	h.cfg.Metrics.S3("list", err)
	if err != nil {
		return nil, nil, false, 0, err
	}
	more := aws.ToBool(page.IsTruncated) && page.NextContinuationToken != nil
	sidecars := pageSidecars(page.Contents, more)
	base := baseTask(job)
	base.ScopePrefix = job.Prefix
	enc, err := schema.NewTaskPage(base)
	if err != nil {
		return nil, nil, false, 0, fmt.Errorf("%w: %v", schema.ErrPermanent, err)
	}
	subject := schema.TaskSubject(job.Org, job.Collection)
	for _, o := range page.Contents {
		key := aws.ToString(o.Key)
		if job.Through != "" && key > job.Through {
			more = false // the rest is the next lane's: this lane ends here
			break
		}
		if strings.HasSuffix(key, "/") && aws.ToInt64(o.Size) == 0 || schema.IsSidecar(key) {
			continue // a "directory" marker or a sidecar, not a document
		}
		if job.Filters.Excludes(key, aws.ToInt64(o.Size), aws.ToTime(o.LastModified)) != "" {
			excluded++
			continue
		}
		listed := schema.ListedObject{Key: key, ETag: aws.ToString(o.ETag), Size: aws.ToInt64(o.Size), LastModified: o.LastModified}
		listed.SidecarETag, listed.SidecarKnown = sidecars.of(key)
		data, err := enc.Encode(listed)
		if err != nil {
			return nil, nil, false, 0, fmt.Errorf("%w: %v", schema.ErrPermanent, err)
		}
		tasks = append(tasks, schema.Out{Subject: subject, MsgID: schema.TaskMsgID(job.JobID, job.Bucket, key, "", ""), Data: data})
	}
	planned := job.Planned + len(tasks)
	if more && (job.MaxFiles == 0 || planned < job.MaxFiles) {
		cont := *job
		cont.ContinuationToken, cont.StartAfter, cont.Page, cont.Planned = *page.NextContinuationToken, "", job.Page+1, planned
		next = []*schema.Job{&cont}
		if split && job.MaxFiles == 0 {
			next = splitLane(&cont, page.Contents)
		}
	}
	return tasks, next, more && next == nil, excluded, nil
}

// listInput is the ListObjectsV2 request of job's page: PageSize keys (fewer
// when max_files is near) from its continuation token or start key.
func (h *Handler) listInput(t *creds.Tenant, job *schema.Job) *s3.ListObjectsV2Input {
	maxKeys := h.cfg.PageSize
	if job.MaxFiles > 0 && int32(job.MaxFiles-job.Planned) < maxKeys {
		maxKeys = int32(job.MaxFiles - job.Planned)
	}
	in := &s3.ListObjectsV2Input{Bucket: aws.String(job.Bucket), MaxKeys: aws.Int32(maxKeys), ExpectedBucketOwner: t.Owner()}
	if job.Prefix != "" {
		in.Prefix = aws.String(job.Prefix)
	}
	if job.ContinuationToken != "" {
		in.ContinuationToken = aws.String(job.ContinuationToken)
	} else if job.StartAfter != "" {
		in.StartAfter = aws.String(job.StartAfter)
	}
	return in
}

// splitLane is the next page of a lane, cont, as the first pages of two
// lanes when the lane splits (see lanes.go): one goes on from cont's
// continuation token up to the split point, the other starts after it.
func splitLane(cont *schema.Job, listed []types.Object) []*schema.Job {
	keys := make([]string, len(listed))
	for i, o := range listed {
		keys[i] = aws.ToString(o.Key)
	}
	point, ok := splitPoint(keys, cont.Through, len(cont.Lane))
	if !ok {
		return []*schema.Job{cont}
	}
	low, high := *cont, *cont
	low.Lane, low.Through = cont.Lane+"0", point
	high.Lane, high.ContinuationToken, high.StartAfter = cont.Lane+"1", "", point
	return []*schema.Job{&low, &high}
}

// baseTask is what every task of job carries.
func baseTask(job *schema.Job) schema.Task {
	return schema.Task{Op: schema.OpIndex, JobID: job.JobID, Org: job.Org, Collection: job.Collection, IntegrationID: job.IntegrationID,
		CredentialRef: job.CredentialRef, Bucket: job.Bucket, Region: job.Region, SkipExisting: job.SkipExisting,
		OverwriteExisting: job.OverwriteExisting, ReadSettings: job.ReadSettings, Sync: job.DeleteMissing && job.Kind != schema.JobFile}
}

func taskMsg(t *schema.Task) schema.Out {
	return schema.Out{Subject: schema.TaskSubject(t.Org, t.Collection), MsgID: schema.TaskMsgID(t.JobID, t.Bucket, t.Key, t.VersionID, t.Sequencer), Msg: t}
}

// listedSidecars is what one listing page says of its keys' sidecars.
type listedSidecars struct {
	etags map[string]string // the page's sidecars by key
	last  string            // the page's last key
	more  bool              // later pages follow
}

func pageSidecars(contents []types.Object, more bool) listedSidecars {
	l := listedSidecars{etags: map[string]string{}, more: more}
	for _, o := range contents {
		key := aws.ToString(o.Key)
		if schema.IsSidecar(key) {
			l.etags[key] = aws.ToString(o.ETag)
		}
		l.last = key
	}
	return l
}

// of returns the ETag of key's sidecar ("": none) and whether the page
// settles it. A listing is in key order and a sidecar's key follows its
// document's: it is on the same page unless it sorts after the page's
// last key; then only a later page can tell, and the worker asks S3.
func (l listedSidecars) of(key string) (etag string, known bool) {
	sk := schema.SidecarKey(key)
	if etag, ok := l.etags[sk]; ok {
		return etag, true
	}
	return "", !l.more || sk <= l.last
}
