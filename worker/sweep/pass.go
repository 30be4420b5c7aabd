package sweep

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/worker/creds"
)

// pass is the second pass of a sweep: each candidate is asked of S3 and,
// when S3 answers a clean 404, deleted.
type pass struct {
	h      *Handler
	job    *schema.Job
	tenant *creds.Tenant

	deleted, excluded, kept, unconfirmed atomic.Int64
}

// run streams the scope's candidates to up to Concurrency HEADs at once.
func (p *pass) run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(p.h.cfg.Concurrency)
	err := p.h.each(gctx, p.job, func(e jetstream.KeyValueEntry, st *schema.ObjectState) error {
		if st.SeenSince(p.job.JobID, p.job.CreatedAt) {
			return nil
		}
		key, rev := e.Key(), e.Revision()
		g.Go(func() error { return p.candidate(gctx, key, rev, st) })
		return nil
	})
	if werr := g.Wait(); err == nil {
		err = werr
	}
	return err
}

// candidate settles one object the listing did not contain: kept when S3
// still has it (or did not answer cleanly), else its chunks are tombstoned
// and its state says deleted.
func (p *pass) candidate(ctx context.Context, key string, rev uint64, st *schema.ObjectState) error {
	m := p.h.cfg.Metrics.SweepObjects
	m.WithLabelValues("candidate").Inc()
	if p.job.Filters.Excludes(st.Key, st.Size, modified(st)) != "" {
		// Out of the job's scope now: removed like a gone object, without
		// asking S3 (it may well still have it).
		deleted, err := p.delete(ctx, key, rev, st, schema.ReasonExcluded)
		if err == nil && deleted {
			p.excluded.Add(1)
			p.deleted.Add(1)
			m.WithLabelValues("excluded").Inc()
		}
		return err
	}
	gone, err := p.gone(ctx, st)
	switch {
	case err != nil:
		p.unconfirmed.Add(1)
		m.WithLabelValues("unconfirmed").Inc()
		p.h.log.Warn("sweep: object not confirmed gone, kept", "org", p.job.Org, "job_id", p.job.JobID, "bucket", st.Bucket, "key", st.Key,
			"error", creds.PublicMessage(err))
		return nil
	case !gone:
		p.kept.Add(1)
		m.WithLabelValues("kept").Inc()
		return nil
	}
	deleted, err := p.delete(ctx, key, rev, st, schema.ReasonSwept)
	if err != nil {
		return err
	}
	if deleted {
		p.deleted.Add(1)
		m.WithLabelValues("deleted").Inc()
	} else {
		p.kept.Add(1) // written again since the watch read it
		m.WithLabelValues("kept").Inc()
	}
	return nil
}

// gone asks S3 about the object with the tenant's role: true only on a
// clean 404 (no such key, or a delete marker is current); any other error
// is returned, and deletes nothing.
func (p *pass) gone(ctx context.Context, st *schema.ObjectState) (bool, error) {
	h, job := p.h, p.job
	req, err := h.cfg.Resolver.Request(p.tenant, job.JobID, job.Bucket, job.Prefix)
	if err != nil {
		return false, err
	}
	err = h.cfg.Resolver.WithS3(ctx, p.tenant, req, job.Region, func(c *s3.Client) error {
		_, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(st.Bucket), Key: aws.String(st.Key), ExpectedBucketOwner: p.tenant.Owner()})
		h.cfg.Metrics.S3("head", err)
		return err
	})
	if err == nil {
		return false, nil
	}
	if creds.Classify(err).Class == schema.ClassNotFound {
		return true, nil
	}
	return false, err
}

// delete tombstones the object's chunks (an indexed one's), publishes its
// outcome, then marks its state deleted with compare-and-set against rev:
// false when the state was written since (the object came back).
func (p *pass) delete(ctx context.Context, key string, rev uint64, st *schema.ObjectState, reason string) (bool, error) {
	job := p.job
	now := time.Now().UTC()
	var out []schema.Out
	if st.Status == schema.ObjectIndexed {
		ts := &schema.Tombstone{Org: job.Org, Collection: job.Collection, Bucket: st.Bucket, Key: st.Key, VersionID: st.VersionID,
			ETag: st.ETag, ChunkIDs: st.ChunkIDs(job.Org, job.Collection), Reason: "deleted", At: now}
		out = ts.Msgs(schema.TombstoneIDPrefix+schema.TaskMsgID(job.JobID, st.Bucket, st.Key, "", "sweep"), rev)
	}
	ev := &schema.ObjectEvent{EventID: schema.ObjectEventID(job.JobID, schema.OpDelete, st.Bucket, st.Key, "sweep"), JobID: job.JobID,
		Org: job.Org, Collection: job.Collection, Bucket: st.Bucket, Key: st.Key, ETag: st.ETag, Outcome: schema.OutcomeDeleted,
		Reason: reason, At: now}
	out = append(out, schema.Out{Subject: schema.ObjectEventSubject(job.Org, job.Collection), MsgID: ev.EventID, Msg: ev})
	if err := p.h.cfg.Publish(ctx, out); err != nil {
		return false, err
	}
	d := *st
	d.Status, d.UpdatedAt = schema.ObjectDeleted, now
	data, err := json.Marshal(&d)
	if err != nil {
		return false, err
	}
	// Its own deadline: an answer lost while the bucket's leader changes
	// must not hold the sweep for its hour.
	uctx, cancel := context.WithTimeout(ctx, schema.RequestTimeout)
	defer cancel()
	if _, err := p.h.objects.Update(uctx, key, data, rev); err != nil {
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
			return false, nil
		}
		return false, fmt.Errorf("sweep: save object state: %w", err)
	}
	return true, nil
}

// modified is when the object was last modified, as its state recorded
// (zero when it did not: then modified_after excludes nothing).
func modified(st *schema.ObjectState) time.Time {
	if st.LastModified == nil {
		return time.Time{}
	}
	return *st.LastModified
}
