package index

import (
	"context"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/worker/creds"
)

// A notification is a claim anyone with sqs:SendMessage on the queue can
// make; S3 is the fact. This file holds what checks one against the other:
// HeadObject with the tenant's role, deletes applied only when S3 confirms
// them, and sequencers stored only when S3 bore the change out.

// sequencer is the sequencer to store after task. Sequencers only move
// forward, and a notification's sequencer is stored only once S3 confirmed
// the change it describes (confirmed): a task without one (a job's), or
// whose claim S3 did not bear out, keeps the stored one. overrides is set
// when S3 showed the stored sequencer to be wrong (a later genuine event
// judged stale by it): the task's then replaces it.
func sequencer(task *schema.Task, state *schema.ObjectState, confirmed, overrides bool) string {
	stored := ""
	if state != nil {
		stored = state.Sequencer
	}
	if task.Sequencer == "" || !confirmed {
		return stored
	}
	if stored != "" && schema.SequencerLess(task.Sequencer, stored) && !overrides {
		return stored
	}
	return task.Sequencer
}

// sameETag compares ETags with or without their quotes.
func sameETag(a, b string) bool { return strings.Trim(a, `"`) == strings.Trim(b, `"`) }

// s3Now is what S3 says of an object right now, asked with the tenant's role.
type s3Now struct {
	gone bool   // no such key or version, or a delete marker is current
	hdr  header // what HEAD answered, when it exists
}

// agreesWithStale reports whether S3 bears out what the stored sequencer
// says, that task is stale: a late create for an object that is gone or still has
// the stored content, or a late delete of an object that still exists.
func (n *s3Now) agreesWithStale(task *schema.Task, state *schema.ObjectState) bool {
	if task.Op == schema.OpDelete {
		return !n.gone
	}
	return n.gone || state.Status != schema.ObjectDeleted && sameETag(n.hdr.etag, state.ETag)
}

// headObject asks S3 about task's object (its version, when the task names
// one): notifications are claims anyone with sqs:SendMessage can make, S3
// is the fact. NotFound, NoSuchKey, NoSuchVersion and MethodNotAllowed (a
// delete marker asked by version) mean gone.
func (h *Handler) headObject(ctx context.Context, t *creds.Tenant, task *schema.Task) (*s3Now, error) {
	req, err := h.cfg.Resolver.Request(t, "events", task.Bucket, task.ScopePrefix)
	if err != nil {
		return nil, err
	}
	var out *s3.HeadObjectOutput
	err = h.cfg.Resolver.WithS3(ctx, t, req, task.Region, func(c *s3.Client) error {
		in := &s3.HeadObjectInput{Bucket: aws.String(task.Bucket), Key: aws.String(task.Key), ExpectedBucketOwner: t.Owner()}
		if task.VersionID != "" {
			in.VersionId = aws.String(task.VersionID)
		}
		var err error
		out, err = c.HeadObject(ctx, in)
		h.m.S3("head", err)
		return err
	})
	if err != nil {
		c := creds.Classify(err)
		if c.Class == schema.ClassNotFound || c.Code == "MethodNotAllowed" {
			return &s3Now{gone: true}, nil
		}
		return nil, err
	}
	if aws.ToBool(out.DeleteMarker) {
		return &s3Now{gone: true}, nil
	}
	return &s3Now{hdr: headHeader(out)}, nil
}

// unconfirmed records a notification claim S3 did not bear out: a metric
// by reason and an AUDIT record of the org (a queue that starts sending
// such claims is being written by someone other than S3).
func (h *Handler) unconfirmed(ctx context.Context, task *schema.Task, reason string) {
	h.m.Unconfirmed.WithLabelValues(reason).Inc()
	h.cfg.Registry.Audit(ctx, task.Org, "worker", "notification.unconfirmed", reason, "s3://"+task.Bucket+"/"+task.Key)
}

// ReasonNotDeletedInS3 is the skip reason of a delete notification that S3
// does not bear out: the object (or the named version) still exists.
const ReasonNotDeletedInS3 = "not_deleted_in_s3"

// The other reasons a notification claim is not borne out by S3 (metric
// stevedore_notifications_unconfirmed_total, each series started at zero by
// New, and the
// org's AUDIT).
const (
	reasonCreateNotAsClaimed = "create_not_as_claimed"      // S3 returned another version than the record named
	reasonStaleOverridden    = "stale_sequencer_overridden" // a stored sequencer contradicted S3
)

// deleteObject applies a delete notification once S3, asked with the
// tenant's role, confirms it (the object or the named version is gone, or a
// delete marker is current): it publishes a tombstone for every chunk of the
// stored version. A delete S3 does not confirm changes nothing. o.now is
// what S3 already said of the object (nil: ask it).
func (h *Handler) deleteObject(ctx context.Context, o *object) (*schema.ObjectEvent, error) {
	task, state := o.task, o.state
	if o.now == nil {
		var err error
		if o.now, err = h.headObject(ctx, o.tenant, task); err != nil {
			return nil, err
		}
	}
	if !o.now.gone {
		h.unconfirmed(ctx, task, ReasonNotDeletedInS3)
		h.log.Warn("delete notification not borne out by S3: ignored", "org", task.Org, "collection", task.Collection, "bucket", task.Bucket,
			"key", task.Key, "outcome", "skipped", "reason", ReasonNotDeletedInS3)
		ev := event(task, schema.OutcomeSkipped)
		ev.Reason = ReasonNotDeletedInS3 + ": S3 still has the object"
		return ev, nil
	}
	ev := event(task, schema.OutcomeDeleted)
	if state == nil || state.Status != schema.ObjectIndexed {
		return ev, nil
	}
	if task.VersionID != "" && state.VersionID != "" && task.VersionID != state.VersionID {
		return ev, nil // another version was deleted; the indexed one stays
	}
	ts := &schema.Tombstone{Org: task.Org, Collection: task.Collection, Bucket: task.Bucket, Key: task.Key, VersionID: state.VersionID,
		ETag: state.ETag, ChunkIDs: state.ChunkIDs(task.Org, task.Collection), Reason: "deleted", At: time.Now().UTC()}
	id := schema.TombstoneIDPrefix + schema.TaskMsgID(task.JobID, task.Bucket, task.Key, task.VersionID, task.Sequencer)
	if err := h.cfg.Publish(ctx, ts.Msgs(id, o.rev)); err != nil {
		return nil, err
	}
	deleted := *state
	deleted.Status, deleted.Sequencer, deleted.UpdatedAt = schema.ObjectDeleted, sequencer(task, state, true, o.overrides), time.Now().UTC()
	if err := h.saveState(ctx, o.key, &deleted, o.rev); err != nil {
		return nil, err
	}
	return ev, nil
}
