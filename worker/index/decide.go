package index

import (
	"github.com/stevedore-dev/stevedore/schema"
)

// course is what a task's stored object state decides to do with it.
type course int

const (
	proceed      course = iota // fetch and index, or delete
	stale                      // an event with a later sequencer for this key was applied: skip
	alreadySaved               // a redelivery whose first attempt saved the state: report that outcome again
	unchanged                  // skip_existing, and the state covers this ETag: skip without fetching
	refresh                    // skip_existing, the same ETag, but what the chunks carry may have changed: check it (refresh.go)
)

// decision is decide's answer: what to do now, and, when that is to
// proceed, what to do instead if S3 returns the ETag the stored state
// covers (the listing's ETag was unknown, or not the stored one).
type decision struct {
	now     course
	covered course // alreadySaved or unchanged; proceed: none
	etag    string // the stored state's ETag, when covered is set
}

// onFetch is the decision once S3 returned the object with etag.
func (d decision) onFetch(etag string) course {
	if d.covered != proceed && d.etag == etag {
		return d.covered
	}
	return proceed
}

// decide is the pure decision a task's stored state makes, before any
// work: the task's ETag (the listing's or the notification's; "" when
// unknown) stands for the object until S3 is asked.
func decide(task *schema.Task, state *schema.ObjectState, customHash string) decision {
	if state == nil {
		return decision{now: proceed}
	}
	// Notifications arrive out of order: an event older than the one the
	// state already reflects changes nothing.
	if task.Sequencer != "" && state.Sequencer != "" && schema.SequencerLess(task.Sequencer, state.Sequencer) {
		return decision{now: stale}
	}
	if task.Op == schema.OpDelete {
		return decision{now: proceed} // deleting is idempotent: a deleted state publishes nothing again
	}
	saved := state.Status == schema.ObjectIndexed || state.Status == schema.ObjectSkipped
	// The same job's task (or the same notification) already got as far as
	// saving the state: its chunks are durable, report the same outcome.
	sameTask := (task.JobID != "" && state.JobID == task.JobID) || (task.JobID == "" && task.Sequencer != "" && state.Sequencer == task.Sequencer)
	// Unchanged only if read the same way: a basic index does not stand in
	// for an advanced one, nor the other way round, nor one chunked to
	// another size or overlap.
	skips := task.SkipExisting && !task.OverwriteExisting && state.ProcessingType == processingType(task) && state.Encoding == encodingOf(task) &&
		state.Chunking == schema.Chunking(task.ChunkTokens, task.ChunkOverlap)
	switch {
	case !saved:
		return decision{now: proceed}
	case sameTask && (task.ETag == "" || state.ETag == task.ETag):
		return decision{now: alreadySaved}
	case sameTask:
		return decision{now: proceed, covered: alreadySaved, etag: state.ETag}
	case skips && task.ViaSidecar != "" && state.Status == schema.ObjectIndexed:
		return decision{now: refresh} // its sidecar changed: the document's metadata may have
	case skips && task.ETag != "" && state.ETag == task.ETag && (state.Status != schema.ObjectIndexed || sameMeta(task, state, customHash)):
		return decision{now: unchanged}
	case skips && task.ETag != "" && state.ETag == task.ETag:
		return decision{now: refresh}
	case skips:
		return decision{now: proceed, covered: unchanged, etag: state.ETag}
	}
	return decision{now: proceed}
}

// sameMeta reports whether the listing shows that what an indexed
// object's chunks carry besides their text is as task would make it: the
// same last-modified time (a copy in place that changed the user metadata
// keeps the ETag, not the time), the same sidecar, the same custom
// metadata (customHash), and no tags asked for (S3 changes no listed
// field when tags change).
func sameMeta(task *schema.Task, state *schema.ObjectState, customHash string) bool {
	return task.LastModified != nil && state.LastModified != nil && task.LastModified.Equal(*state.LastModified) &&
		task.SidecarKnown && sameETag(task.SidecarETag, state.SidecarETag) && !task.ObjectTags && customHash == state.CustomHash
}

// processingType is what the object state records of the task's
// processing type: "advanced", or empty for basic.
func processingType(task *schema.Task) string {
	if task.Structured() {
		return schema.ProcessingAdvanced
	}
	return ""
}

// encodingOf is what the object state records of the task's tokenizer:
// its name, or empty for the default.
func encodingOf(task *schema.Task) string {
	if task.Encoding == schema.DefaultEncoding {
		return ""
	}
	return task.Encoding
}

// report is the outcome of a task its stored state settles (alreadySaved
// or unchanged), with nothing fetched or published.
func report(v course, task *schema.Task, state *schema.ObjectState) *schema.ObjectEvent {
	if v == alreadySaved && state.Status == schema.ObjectIndexed {
		ev := event(task, schema.OutcomeIndexed)
		ev.ETag, ev.Chunks, ev.Tokens = state.ETag, state.Chunks, state.Tokens
		return ev
	}
	ev := event(task, schema.OutcomeSkipped)
	ev.ETag = state.ETag
	switch {
	case v == alreadySaved:
		ev.Reason = state.Reason // the same skip again
	case state.Status == schema.ObjectSkipped:
		ev.Reason = schema.ReasonUnchangedSinceSkipped
	default:
		ev.Reason = schema.ReasonAlreadyIndexed
	}
	return ev
}
