package schema

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"time"
)

// Job statuses reported by GET /v2/jobs/{id}: pending → running →
// completed | completed_with_errors | failed. A job with failed files never
// looks like a clean success: completed_with_errors when some files were
// read, failed (with the cause in Error) when none could be.
const (
	JobStatusPending             = "pending"
	JobStatusRunning             = "running"
	JobStatusCompleted           = "completed"             // every object indexed or skipped
	JobStatusCompletedWithErrors = "completed_with_errors" // some objects failed (see Errors), others were read
	JobStatusFailed              = "failed"                // the job could not proceed, or no object could be read
	JobStatusCancelled           = "cancelled"             // cancelled: no more pages planned, unclaimed tasks skipped
)

// ReasonCancelled is the skip reason of a task whose job was cancelled
// before the task was claimed.
const ReasonCancelled = "cancelled"

// Final reports whether the job has reached a status it will not leave.
func (s *JobStatus) Final() bool {
	switch s.Status {
	case JobStatusCompleted, JobStatusCompletedWithErrors, JobStatusFailed, JobStatusCancelled:
		return true
	}
	return false
}

// MaxJobFileErrors caps the per-file error list kept in a job's status.
const MaxJobFileErrors = 100

// FileError is one object that was skipped or failed, kept in the job status.
type FileError struct {
	Key        string  `json:"key"`
	Outcome    Outcome `json:"outcome"`
	Reason     string  `json:"reason"`
	ErrorClass string  `json:"error_class,omitempty"`
	ErrorCode  string  `json:"error_code,omitempty"` // stable, for programs: see ErrorCode
}

// JobError is why a whole job failed.
type JobError struct {
	Reason     string `json:"reason"`
	ErrorClass string `json:"error_class"`
	ErrorCode  string `json:"error_code,omitempty"` // stable, for programs: see ErrorCode
	Hint       string `json:"hint,omitempty"`
}

// JobStatus is a job's record in BucketJobs, created by the producer and
// folded from EVENTS by the worker fleet's tracker. LastEventSeq is the
// EVENTS stream sequence of the last event folded in: folding is in stream
// order, so an event at or below it was already counted.
type JobStatus struct {
	JobID         string  `json:"job_id"`
	Org           string  `json:"org"`
	Collection    string  `json:"collection"`
	Kind          JobKind `json:"kind"`
	Bucket        string  `json:"bucket"`
	Prefix        string  `json:"prefix,omitempty"`
	Key           string  `json:"key,omitempty"`
	Document      string  `json:"document_id,omitempty"` // delete_document jobs
	RetryOf       string  `json:"retry_of,omitempty"`    // retry jobs
	IntegrationID string  `json:"integration_id"`
	Status        string  `json:"status"`
	FilesTotal    int64   `json:"files_total"`
	FilesIndexed  int64   `json:"files_indexed"`
	FilesSkipped  int64   `json:"files_skipped"`
	FilesFailed   int64   `json:"files_failed"`
	FilesExcluded int64   `json:"files_excluded,omitempty"` // listed, left out by the job's filters (not in files_total)
	// FilesMetadataUpdated: of files_indexed, those whose chunks were
	// published again for a metadata-only change, without extracting.
	FilesMetadataUpdated int64 `json:"files_metadata_updated,omitempty"`
	FilesDeleted         int64 `json:"files_deleted"`            // indexed before, gone from the bucket now (or erased by an erase job): their chunks were tombstoned
	ChunksDeleted        int64 `json:"chunks_deleted,omitempty"` // erase jobs: chunks tombstoned
	ChunksProcessed      int64 `json:"chunks_processed"`
	TokensUsed           int64 `json:"tokens_used"`
	BytesProcessed       int64 `json:"bytes_processed"`
	PagesPlanned         int   `json:"pages_planned"`
	LastPage             int   `json:"last_page"` // -1 until the last page is planned
	// Lanes is the bookkeeping of a listing the planner split into lanes,
	// by lane (Job.Lane): the lanes not yet wholly folded. A lane leaves it
	// for LanesDone once it is, so the record holds the lanes at work, not
	// every lane a huge listing ever had. Both are empty on a record made
	// before lanes, whose pages are one sequence ended by LastPage.
	Lanes         map[string]Lane `json:"lanes,omitempty"`
	LanesDone     int             `json:"lanes_done,omitempty"`
	Errors        []FileError     `json:"errors"`
	ErrorsDropped int64           `json:"errors_dropped,omitempty"`
	Error         *JobError       `json:"error,omitempty"`
	CreatedAt     time.Time       `json:"created_at"`
	StartedAt     *time.Time      `json:"started_at,omitempty"`
	CompletedAt   *time.Time      `json:"completed_at,omitempty"`
	LastEventSeq  uint64          `json:"last_event_seq"`
	// RequestHash binds an Idempotency-Key to the request that created the
	// job (a hash of endpoint and body): a retry must match it.
	RequestHash string `json:"request_hash,omitempty"`
	// CustomMetadata is the request's, kept here once rather than copied
	// into every task (up to 16 KiB × objects); workers read it with the
	// job's status and put it on every chunk.
	CustomMetadata json.RawMessage `json:"custom_metadata,omitempty"`
	// What the sweep of a sync needs of the job (see Job).
	Region          string `json:"region,omitempty"`
	CredentialRef   string `json:"credential_ref,omitempty"`
	AllowMassDelete bool   `json:"allow_mass_delete,omitempty"`
	// Sweep is the sweep of a sync (a job with delete_missing): nil for
	// other jobs.
	Sweep *Sweep `json:"sweep,omitempty"`
	// Schedule: the job was started by its collection's schedule; Tick
	// names the tick that started it (its ID is derived from it).
	Schedule string `json:"schedule,omitempty"`
	Tick     string `json:"tick,omitempty"`
	// Filters are the job's (see Job).
	Filters *Filters `json:"filters,omitempty"`
	// How its objects are read (a retry reads them the same way).
	ReadSettings
}

// Sweep statuses: pending until every listed object has an outcome, then
// running, then one of the others.
const (
	SweepPending    = "pending"
	SweepRunning    = "running"
	SweepDone       = "done"       // every candidate confirmed gone was tombstoned
	SweepIncomplete = "incomplete" // some candidates could not be confirmed (S3 errors): they stay, for the next sync
	SweepRefused    = "refused"    // more candidates than the share limit: nothing deleted (allow_mass_delete)
	SweepSkipped    = "skipped"    // the listing was incomplete (max_files) or the job was cancelled: nothing deleted
	SweepFailed     = "failed"     // the sweep could not run (Reason): nothing more deleted
)

// Sweep is what a sync's sweep found and did. Candidates are objects
// stevedore held in the job's scope (indexed or skipped) that its complete
// listing did not contain; each was deleted only when S3, asked with the
// tenant's role, answered a clean 404.
type Sweep struct {
	Status      string  `json:"status"`
	Reason      string  `json:"reason,omitempty"`
	Held        int64   `json:"held"`        // objects held in the scope
	Candidates  int64   `json:"candidates"`  // held, not in the listing
	Deleted     int64   `json:"deleted"`     // confirmed gone, or excluded by the filters: chunks tombstoned
	Excluded    int64   `json:"excluded"`    // of Deleted: excluded by the job's filters (no HEAD asked)
	Kept        int64   `json:"kept"`        // S3 still has them (written after the listing, or their task failed)
	Unconfirmed int64   `json:"unconfirmed"` // S3 did not answer cleanly: kept
	MaxShare    float64 `json:"max_share,omitempty"`
}

// ended reports whether the sweep is over (or never ran).
func (w *Sweep) ended() bool {
	return w == nil || (w.Status != SweepPending && w.Status != SweepRunning)
}

// Done reports whether every planned object has an outcome and the sweep,
// if any, has ended.
func (s *JobStatus) Done() bool {
	return s.listed() && s.Sweep.ended()
}

// listed reports whether every planned object has an outcome.
func (s *JobStatus) listed() bool {
	return s.Planned() && s.Settled() >= s.FilesTotal
}

// Planned reports whether every page of the job's listing is planned: its
// FilesTotal is final.
func (s *JobStatus) Planned() bool {
	if !s.InLanes() {
		return s.LastPage >= 0 && s.PagesPlanned == s.LastPage+1
	}
	for _, l := range s.Lanes {
		if !l.done() {
			return false
		}
	}
	return true
}

// InLanes reports whether the record keeps its listing's lanes (a record
// made before lanes does not).
func (s *JobStatus) InLanes() bool { return len(s.Lanes) > 0 || s.LanesDone > 0 }

// Lane is what the fold knows of one lane of a job's listing: a run of
// pages numbered Start to Last. Events fold in stream order, but a lane's
// pages may be planned (by other workers) before the event of the page
// that split it off is stored; the lane is known to be whole only when its
// first page (Start, told by that event) and its last are known and every
// page between was folded.
type Lane struct {
	Start int `json:"start"` // -1 until the page that split the lane off is folded
	Pages int `json:"pages"` // pages folded
	Last  int `json:"last"`  // -1 until the lane's last page is folded
}

func (l Lane) done() bool { return l.Start >= 0 && l.Last >= 0 && l.Pages == l.Last-l.Start+1 }

// setLane records what is known of lane name; a lane wholly folded is
// counted in LanesDone instead (no later event can name it: its own pages
// are all folded, and its Start came from the event that split it off).
func (s *JobStatus) setLane(name string, l Lane) {
	if !l.done() {
		if s.Lanes == nil {
			s.Lanes = map[string]Lane{}
		}
		s.Lanes[name] = l
		return
	}
	delete(s.Lanes, name)
	s.LanesDone++
}

// lane returns what the record knows of lane name: nothing (Start and Last
// unknown) when it first hears of it.
func (s *JobStatus) lane(name string) Lane {
	if l, ok := s.Lanes[name]; ok {
		return l
	}
	return Lane{Start: -1, Last: -1}
}

// Sweeping reports whether the sweep is due or under way: every listed
// object has an outcome and the sweep has not ended.
func (s *JobStatus) Sweeping() bool {
	return s.Status == JobStatusRunning && s.Sweep != nil && s.Sweep.Status == SweepRunning
}

// SweepJob is the message that sweeps the job's scope.
func (s *JobStatus) SweepJob() *Job {
	return &Job{JobID: s.JobID, Org: s.Org, Collection: s.Collection, IntegrationID: s.IntegrationID, CredentialRef: s.CredentialRef,
		Kind: s.Kind, Bucket: s.Bucket, Region: s.Region, Prefix: s.Prefix, Page: s.LastPage + 1, DeleteMissing: true,
		AllowMassDelete: s.AllowMassDelete, Filters: s.Filters, Sweep: true, CreatedAt: s.CreatedAt}
}

// ObjectStatus is what an object's state records about it.
type ObjectStatus string

// Object statuses.
const (
	ObjectIndexed ObjectStatus = "indexed" // its chunks are published and committed
	ObjectSkipped ObjectStatus = "skipped" // unsupported or unreadable content: nothing published
	ObjectDeleted ObjectStatus = "deleted" // deleted in S3: its chunks are tombstoned
	// ObjectFailed records an object whose task was given up (Reason,
	// ErrorCode) and that has no indexed version: nothing published. The
	// next task of it tries again.
	ObjectFailed ObjectStatus = "failed"
	// ObjectErasing marks a document an erase job (JobID: a document
	// delete, a wipe, a collection delete) is removing: its chunks are being
	// tombstoned and the state is removed next. Index tasks wait for it.
	ObjectErasing ObjectStatus = "erasing"
)

// ObjectState is one object's record in BucketObjects (key: ObjectKey).
type ObjectState struct {
	Bucket           string       `json:"bucket"`
	Key              string       `json:"key"`
	ETag             string       `json:"etag"`
	VersionID        string       `json:"version_id,omitempty"`
	Sequencer        string       `json:"sequencer,omitempty"`
	Chunks           int          `json:"chunks"`
	Tokens           int64        `json:"tokens"`
	ExtractorVersion string       `json:"extractor_version"`
	ContentType      string       `json:"content_type,omitempty"`    // as detected from the content
	ProcessingType   string       `json:"processing_type,omitempty"` // "advanced", or empty for basic
	Encoding         string       `json:"encoding,omitempty"`        // the tokenizer, when not cl100k_base
	Chunking         string       `json:"chunking,omitempty"`        // a requested chunk size and overlap ("t256o32"), when not the default
	Status           ObjectStatus `json:"status"`
	Reason           string       `json:"reason,omitempty"`     // why skipped or failed
	ErrorCode        string       `json:"error_code,omitempty"` // failed: the stable code (see ErrorCode)
	JobID            string       `json:"job_id,omitempty"`
	// SeenBy is the last sync (a job with delete_missing) whose listing
	// held the object, and SeenAt when: its sweep leaves the object alone,
	// and so does the sweep of any sync created before then (syncs over
	// one scope may run at once; see SeenSince).
	SeenBy string     `json:"seen_by,omitempty"`
	SeenAt *time.Time `json:"seen_at,omitempty"`
	// IntegrationID is the integration the object was read with (empty in
	// states of earlier versions): an integration revoked with its data is
	// erased by it.
	IntegrationID string `json:"integration_id,omitempty"`
	// ChunkSeqs are the CHUNKS stream sequences of the indexed version's
	// chunks, in chunk order, as runs: a document's chunks are read back
	// by sequence, at a cost that does not grow with its collection. Absent
	// in states of earlier versions, and when the chunks were stored too
	// scattered to record in MaxSeqRuns runs.
	ChunkSeqs []SeqRun `json:"chunk_seqs,omitempty"`
	// Size and LastModified are the object's, as S3 gave them.
	Size         int64      `json:"size,omitempty"`
	LastModified *time.Time `json:"last_modified,omitempty"`
	// SidecarETag is the ETag of the sidecar read with the version ("":
	// none); MetaHash the fingerprint of what its chunks carry besides
	// their text (source, custom and document metadata); CustomHash that of
	// the custom metadata alone. A task whose object kept its ETag but not
	// these re-publishes the chunks' metadata without extracting again.
	SidecarETag string    `json:"sidecar_etag,omitempty"`
	MetaHash    string    `json:"meta_hash,omitempty"`
	CustomHash  string    `json:"custom_hash,omitempty"`
	UpdatedAt   time.Time `json:"updated_at"`
}

// SeqRun is a run of consecutive stream sequences: [first, count].
type SeqRun [2]uint64

// MaxSeqRuns bounds the runs an object state records (about 20 KB of JSON):
// chunks published by one worker are stored in runs of up to a batch, so a
// 10,000-chunk document needs about 160; beyond the bound none is recorded.
const MaxSeqRuns = 1024

// AppendSeq adds seq, the next chunk's sequence, to runs.
func AppendSeq(runs []SeqRun, seq uint64) []SeqRun {
	if n := len(runs); n > 0 && runs[n-1][0]+runs[n-1][1] == seq {
		runs[n-1][1]++
		return runs
	}
	return append(runs, SeqRun{seq, 1})
}

// SeqCount is how many sequences runs hold.
func SeqCount(runs []SeqRun) int {
	n := 0
	for _, r := range runs {
		n += int(r[1])
	}
	return n
}

// Seqs returns the sequences of runs in order (at most limit when limit > 0).
func Seqs(runs []SeqRun, limit int) []uint64 {
	var out []uint64
	for _, r := range runs {
		for i := uint64(0); i < r[1]; i++ {
			if limit > 0 && len(out) == limit {
				return out
			}
			out = append(out, r[0]+i)
		}
	}
	return out
}

// ChunkIDs returns the IDs of the chunks this state says were published.
func (s *ObjectState) ChunkIDs(org, collection string) []string {
	version := s.VersionID
	if version == "" {
		version = s.ETag
	}
	ids := make([]string, s.Chunks)
	for i := range ids {
		ids[i] = ChunkID(org, collection, s.Bucket, s.Key, version, s.ExtractorVersion, i)
	}
	return ids
}

// AuditRecord is one entry of the immutable AUDIT stream: onboarding,
// verification, rotation, revocation and refusals. It never holds a secret.
type AuditRecord struct {
	V       int       `json:"v"`
	Org     string    `json:"org"`
	Actor   string    `json:"actor"`  // "api", "cli", "worker"
	Action  string    `json:"action"` // e.g. "org.create", "index.refused"
	Outcome string    `json:"outcome"`
	Detail  string    `json:"detail,omitempty"`
	At      time.Time `json:"at"`
}

// ValidJobStatus reports whether s is one of the job statuses.
func ValidJobStatus(s string) bool {
	switch s {
	case JobStatusPending, JobStatusRunning, JobStatusCompleted, JobStatusCompletedWithErrors, JobStatusFailed, JobStatusCancelled:
		return true
	}
	return false
}

// NewJobStatus is the record of a job just submitted: pending, nothing
// planned (LastPage -1), no errors.
func NewJobStatus(job *Job) *JobStatus {
	st := &JobStatus{JobID: job.JobID, Org: job.Org, Collection: job.Collection, Kind: job.Kind, Bucket: job.Bucket,
		Prefix: job.Prefix, Key: job.Key, Document: job.Document, IntegrationID: job.IntegrationID, Status: JobStatusPending, LastPage: -1,
		Errors: []FileError{}, CreatedAt: job.CreatedAt, CustomMetadata: job.CustomMetadata,
		Region: job.Region, CredentialRef: job.CredentialRef, AllowMassDelete: job.AllowMassDelete, Schedule: job.Schedule, Tick: job.Tick, Filters: job.Filters,
		ReadSettings: job.ReadSettings, RetryOf: job.RetryOf}
	if job.DeleteMissing && (job.Kind == JobBucket || job.Kind == JobDirectory) {
		st.Sweep = &Sweep{Status: SweepPending}
	}
	st.Lanes = map[string]Lane{"": {Start: 0, Last: -1}}
	return st
}

// Apply folds one EVENTS message, at stream sequence seq, into the job
// record: an *ObjectEvent or a *JobEvent of this job. Events must be applied
// in stream order; one at or below LastEventSeq was folded already and
// changes nothing (a batch redelivered after a crash is not counted twice).
// Apply moves pending → running on the first event and running → completed
// once every planned object has an outcome. It reports whether s changed.
func (s *JobStatus) Apply(seq uint64, event any, now time.Time) bool {
	if seq <= s.LastEventSeq {
		return false
	}
	switch ev := event.(type) {
	case *ObjectEvent:
		s.applyObject(ev)
	case *JobEvent:
		s.applyJob(ev, now)
	default:
		return false
	}
	s.LastEventSeq = seq
	if s.StartedAt == nil {
		s.StartedAt = &now
	}
	if s.Status == JobStatusPending {
		s.Status = JobStatusRunning
	}
	if s.Status == JobStatusRunning && s.listed() {
		if s.Sweep != nil && s.Sweep.Status == SweepPending {
			s.Sweep.Status = SweepRunning // the tracker publishes the sweep (jobs.Folder)
		}
		if s.Sweep.ended() {
			s.finish(now)
		}
	}
	return true
}

// finish sets the final status of a job whose every object has an outcome.
func (s *JobStatus) finish(now time.Time) {
	s.CompletedAt = &now
	switch {
	case s.FilesFailed == 0 && s.sweepClean():
		s.Status = JobStatusCompleted
	case s.FilesIndexed+s.FilesSkipped+s.FilesDeleted > 0:
		s.Status = JobStatusCompletedWithErrors
	default:
		// Nothing could be read: the job failed, and the first file's
		// failure is its cause (every file's is in Errors).
		s.Status = JobStatusFailed
		if s.Error == nil && len(s.Errors) > 0 {
			e := s.Errors[0]
			s.Error = &JobError{Reason: fmt.Sprintf("no object could be read; the first failure (%s): %s", e.Key, e.Reason), ErrorClass: e.ErrorClass, ErrorCode: e.ErrorCode}
		}
	}
}

// sweepClean reports whether the sweep, if any, left nothing to look at:
// done, or skipped because the job's own options cut the listing.
func (s *JobStatus) sweepClean() bool {
	return s.Sweep == nil || s.Sweep.Status == SweepDone || s.Sweep.Status == SweepSkipped
}

// SeenSince reports whether the sync jobID, created at since, must leave
// the object alone: its own listing held it, or another sync's did after
// it was created (the object was there during the sync, though its own
// listing did not say so: two syncs over one scope at once each mark the
// object, and only the last mark stays). A zero since (a sweep message
// from before SeenAt) counts the sync's own mark only.
func (s *ObjectState) SeenSince(jobID string, since time.Time) bool {
	return s.SeenBy == jobID || !since.IsZero() && s.SeenAt != nil && !s.SeenAt.Before(since)
}

// ReasonSwept is the reason of the deleted outcome of an object a sync's
// sweep found missing from the listing and S3 confirmed gone.
const ReasonSwept = "missing_from_listing"

// ReasonCollectionDeleted is the skip reason of a task whose collection
// is being deleted.
const ReasonCollectionDeleted = "collection_deleted"

// ReasonErased is the reason of the deleted outcome of a document an erase
// job removed. An erase job learns its total as it goes: each such outcome
// counts in FilesTotal too, and its JobPlanned event (Last) ends it.
const ReasonErased = "erased"

// ReasonMetadataUpdated is the reason of the indexed outcome of a document
// whose chunks were published again for a metadata-only change.
const ReasonMetadataUpdated = "metadata_updated"

// ReasonSidecarWithoutDocument is the skip reason of a sidecar's change
// whose document does not exist (yet: its own upload indexes it).
const ReasonSidecarWithoutDocument = "sidecar_without_document"

// Skip reasons that are not problems: the object was already indexed.
const (
	ReasonAlreadyIndexed        = "already_indexed"
	ReasonUnchangedSinceSkipped = "unchanged_since_skipped"
)

// Settled is how many planned objects have an outcome.
func (s *JobStatus) Settled() int64 {
	return s.FilesIndexed + s.FilesSkipped + s.FilesFailed + s.FilesDeleted
}

func (s *JobStatus) applyObject(ev *ObjectEvent) {
	if ev.Reason == ReasonSwept || (ev.Reason == ReasonExcluded && ev.Outcome == OutcomeDeleted) {
		return // counted by the sweep's JobSwept event, once
	}
	switch ev.Outcome {
	case OutcomeIndexed:
		s.FilesIndexed++
		if ev.Reason == ReasonMetadataUpdated {
			s.FilesMetadataUpdated++
		}
		s.ChunksProcessed += int64(ev.Chunks)
		s.TokensUsed += ev.Tokens
		s.BytesProcessed += ev.Bytes
	case OutcomeSkipped:
		s.FilesSkipped++
		s.BytesProcessed += ev.Bytes
	case OutcomeFailed:
		s.FilesFailed++
	case OutcomeDeleted:
		s.FilesDeleted++
		if ev.Reason == ReasonErased {
			s.FilesTotal++
			s.ChunksDeleted += int64(ev.Chunks)
		}
		return
	}
	if ev.Outcome == OutcomeFailed || (ev.Outcome == OutcomeSkipped && ev.Reason != ReasonAlreadyIndexed && ev.Reason != ReasonUnchangedSinceSkipped && ev.Reason != ReasonCancelled && ev.Reason != ReasonCollectionDeleted) {
		if len(s.Errors) < MaxJobFileErrors {
			s.Errors = append(s.Errors, FileError{Key: ev.Key, Outcome: ev.Outcome, Reason: ev.Reason, ErrorClass: ev.ErrorClass, ErrorCode: ev.ErrorCode})
		} else {
			s.ErrorsDropped++
		}
	}
}

func (s *JobStatus) applyJob(ev *JobEvent, now time.Time) {
	switch ev.Type {
	case JobPlanned:
		s.PagesPlanned++
		s.FilesTotal += int64(ev.Tasks)
		s.FilesExcluded += int64(ev.Excluded)
		if s.InLanes() {
			l := s.lane(ev.Lane)
			l.Pages++
			if ev.Last || len(ev.Split) > 0 { // a split ends the lane: its two halves go on
				l.Last = ev.Page
			}
			s.setLane(ev.Lane, l)
			for _, name := range ev.Split {
				half := s.lane(name)
				half.Start = ev.Page + 1
				s.setLane(name, half)
			}
		}
		if ev.Last {
			s.LastPage = max(s.LastPage, ev.Page)
			if ev.Cut && s.Sweep != nil {
				s.Sweep.Status, s.Sweep.Reason = SweepSkipped, "max_files stopped the listing before its end: nothing was swept"
			}
		}
	case JobQueued:
		s.FilesTotal += int64(ev.Tasks)
	case JobFailed:
		if s.Status == JobStatusCancelled {
			return // a page given up on after the cancel: the job stays cancelled
		}
		s.Status, s.CompletedAt = JobStatusFailed, &now
		s.Error = &JobError{Reason: ev.Reason, ErrorClass: ev.ErrorClass, ErrorCode: ev.ErrorCode, Hint: ev.Hint}
	case JobSwept:
		if s.Sweep.ended() || ev.Sweep == nil {
			return // a sweep redelivered after it was folded
		}
		w := *ev.Sweep
		s.Sweep = &w
		// Swept objects are files the job acted on: counted in the total
		// too, so progress stays settled/total.
		s.FilesDeleted += w.Deleted
		s.FilesTotal += w.Deleted
	}
}

// DecodeEvent decodes an EVENTS message by its subject: an *ObjectEvent
// (events.object.…) or a *JobEvent (events.job.…), with the job it belongs
// to ("" for events of S3 notifications, which belong to no job).
func DecodeEvent(subject string, data []byte) (jobID string, event any, err error) {
	switch {
	case strings.HasPrefix(subject, objectEventPrefix):
		ev, err := DecodeObjectEvent(data)
		if err != nil {
			return "", nil, err
		}
		return ev.JobID, ev, nil
	case strings.HasPrefix(subject, jobEventPrefix):
		ev, err := DecodeJobEvent(data)
		if err != nil {
			return "", nil, err
		}
		return ev.JobID, ev, nil
	}
	return "", nil, &DecodeError{Type: "event", Reason: "invalid_field", Detail: fmt.Sprintf("subject %q is not an event subject", subject)}
}

// JobIndexKey is the key, in the jobs bucket, that lists a job under its
// org, newest first: job keys sort by inverted creation time, so a key
// listing of JobIndexPrefix(org) in lexical order is newest first.
func JobIndexKey(org string, created time.Time, jobID string) string {
	return JobIndexPrefix(org) + fmt.Sprintf("%016x", uint64(math.MaxInt64-created.UnixNano())) + "." + jobID
}

// JobIndexPrefix is the key prefix of an org's job index entries.
func JobIndexPrefix(org string) string { return "idx." + org + "." }

// JobView is a job record as GET /v2/jobs/{id} shows it: the record and
// what follows from it at the time of the request.
type JobView struct {
	*JobStatus
	// The record's bookkeeping, not the caller's business: these shadow the
	// embedded fields (encoding/json takes the shallower field) and, nil,
	// are omitted.
	PagesPlanned  hidden `json:"pages_planned,omitempty"`
	LastPage      hidden `json:"last_page,omitempty"`
	LastEventSeq  hidden `json:"last_event_seq,omitempty"`
	RequestHash   hidden `json:"request_hash,omitempty"`
	CredentialRef hidden `json:"credential_ref,omitempty"`
	Lanes         hidden `json:"lanes,omitempty"`
	LanesDone     hidden `json:"lanes_done,omitempty"`
	// Progress is the share of planned objects that have an outcome, 0–1;
	// while pages are still being planned it counts only what is known.
	Progress float64 `json:"progress"`
	// EstimatedTimeRemainingSeconds extrapolates the rate measured since
	// the job started; absent until there is a rate, 0 once final.
	EstimatedTimeRemainingSeconds *float64 `json:"estimated_time_remaining_seconds,omitempty"`
}

// hidden is a field JobView leaves out.
type hidden *struct{}

// View returns the job as seen at now.
func (s *JobStatus) View(now time.Time) JobView {
	v := JobView{JobStatus: s}
	settled := s.Settled()
	switch {
	case s.Final():
		v.Progress = 1
		zero := 0.0
		v.EstimatedTimeRemainingSeconds = &zero
	case s.FilesTotal > 0:
		v.Progress = min(1, float64(settled)/float64(s.FilesTotal))
		if rate := s.Rate(now); rate > 0 {
			eta := float64(s.FilesTotal-settled) / rate
			v.EstimatedTimeRemainingSeconds = &eta
		}
	}
	return v
}

// Rate is how many objects a second got an outcome since the job started,
// at now; 0 before there is one.
func (s *JobStatus) Rate(now time.Time) float64 {
	settled := s.Settled()
	if s.StartedAt == nil || settled == 0 {
		return 0
	}
	return float64(settled) / max(now.Sub(*s.StartedAt).Seconds(), 0.001)
}
