package schema

import "time"

// Job statuses reported by GET /v2/jobs/{id}.
const (
	JobStatusPending   = "pending"
	JobStatusRunning   = "running"
	JobStatusCompleted = "completed"
	JobStatusFailed    = "failed"
)

// MaxJobFileErrors caps the per-file error list kept in a job's status.
const MaxJobFileErrors = 100

// FileError is one object that was skipped or failed, kept in the job status.
type FileError struct {
	Key        string  `json:"key"`
	Outcome    Outcome `json:"outcome"`
	Reason     string  `json:"reason"`
	ErrorClass string  `json:"error_class,omitempty"`
}

// JobError is why a whole job failed.
type JobError struct {
	Reason     string `json:"reason"`
	ErrorClass string `json:"error_class"`
	Hint       string `json:"hint,omitempty"`
}

// JobStatus is a job's record in BucketJobs, created by the producer and
// folded from EVENTS by the worker fleet's tracker. LastEventSeq is the
// EVENTS stream sequence of the last event folded in: folding is in stream
// order, so an event at or below it was already counted.
type JobStatus struct {
	JobID           string      `json:"job_id"`
	Org             string      `json:"org"`
	Collection      string      `json:"collection"`
	Kind            JobKind     `json:"kind"`
	Bucket          string      `json:"bucket"`
	Prefix          string      `json:"prefix,omitempty"`
	Key             string      `json:"key,omitempty"`
	IntegrationID   string      `json:"integration_id"`
	Status          string      `json:"status"`
	FilesTotal      int64       `json:"files_total"`
	FilesIndexed    int64       `json:"files_indexed"`
	FilesSkipped    int64       `json:"files_skipped"`
	FilesFailed     int64       `json:"files_failed"`
	ChunksProcessed int64       `json:"chunks_processed"`
	TokensUsed      int64       `json:"tokens_used"`
	BytesProcessed  int64       `json:"bytes_processed"`
	PagesPlanned    int         `json:"pages_planned"`
	LastPage        int         `json:"last_page"` // -1 until the last page is planned
	Errors          []FileError `json:"errors"`
	ErrorsDropped   int64       `json:"errors_dropped,omitempty"`
	Error           *JobError   `json:"error,omitempty"`
	CreatedAt       time.Time   `json:"created_at"`
	StartedAt       *time.Time  `json:"started_at,omitempty"`
	CompletedAt     *time.Time  `json:"completed_at,omitempty"`
	LastEventSeq    uint64      `json:"last_event_seq"`
}

// Done reports whether every planned object has an outcome.
func (s *JobStatus) Done() bool {
	return s.LastPage >= 0 && s.PagesPlanned == s.LastPage+1 &&
		s.FilesIndexed+s.FilesSkipped+s.FilesFailed >= s.FilesTotal
}

// ObjectState is one object's record in BucketObjects (key: ObjectKey).
type ObjectState struct {
	Bucket           string    `json:"bucket"`
	Key              string    `json:"key"`
	ETag             string    `json:"etag"`
	VersionID        string    `json:"version_id,omitempty"`
	Sequencer        string    `json:"sequencer,omitempty"`
	Chunks           int       `json:"chunks"`
	Tokens           int64     `json:"tokens"`
	ExtractorVersion string    `json:"extractor_version"`
	Status           string    `json:"status"`           // "indexed", "skipped" (unsupported content), "deleted"
	Reason           string    `json:"reason,omitempty"` // why skipped
	JobID            string    `json:"job_id,omitempty"`
	UpdatedAt        time.Time `json:"updated_at"`
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
