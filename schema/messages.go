package schema

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"time"
)

// Version is the major version of every message this package writes.
const Version = 1

// MaxMessageBytes bounds every message on the wire (1 MiB, the default
// max_payload of nats-server). Chunks are far smaller.
const MaxMessageBytes = 1 << 20

// JobKind says what an index job covers.
type JobKind string

// Job kinds.
const (
	JobBucket    JobKind = "bucket"    // every object in the bucket
	JobDirectory JobKind = "directory" // every object under Prefix
	JobFile      JobKind = "file"      // the single object Key
	// Erase jobs remove documents from a collection: their chunks are
	// tombstoned and their states removed (worker/sweep, erase.go). They
	// read nothing from S3.
	JobDeleteDocument   JobKind = "delete_document"   // the one document Document
	JobWipe             JobKind = "wipe"              // every document of the collection (IntegrationID: only those read with it)
	JobDeleteCollection JobKind = "delete_collection" // every document, then the collection itself
	// JobRetry re-runs the objects job RetryOf failed on, or whose
	// extraction timed out (worker/sweep, retry.go): planned from the
	// collection's object states, not a listing.
	JobRetry JobKind = "retry"
)

// Erases reports whether k is an erase job's kind.
func (k JobKind) Erases() bool {
	return k == JobDeleteDocument || k == JobWipe || k == JobDeleteCollection
}

// Job asks a worker to plan one page of an index request: list up to one page
// of keys, publish a Task per object and a continuation Job for the next page.
type Job struct {
	V             int    `json:"v"`
	JobID         string `json:"job_id"`
	Org           string `json:"org"`
	Collection    string `json:"collection"`
	IntegrationID string `json:"integration_id"`
	// CredentialRef names the sealed static-key secret this job was submitted
	// with (static-key integrations only; see registry.StaticKeys).
	CredentialRef     string          `json:"credential_ref,omitempty"`
	Kind              JobKind         `json:"kind"`
	Bucket            string          `json:"bucket"`
	Region            string          `json:"region"`
	Prefix            string          `json:"prefix,omitempty"`             // directory jobs
	Key               string          `json:"key,omitempty"`                // file jobs
	ContinuationToken string          `json:"continuation_token,omitempty"` // ListObjectsV2 token of this page
	Page              int             `json:"page"`                         // 0 for the first page
	Planned           int             `json:"planned"`                      // tasks published by earlier pages
	MaxFiles          int             `json:"max_files,omitempty"`          // 0 = no limit
	SkipExisting      bool            `json:"skip_existing"`
	OverwriteExisting bool            `json:"overwrite_existing"`
	ReadSettings                      // how its objects are read (see Task)
	CustomMetadata    json.RawMessage `json:"custom_metadata,omitempty"`
	// DeleteMissing makes a bucket or directory job a sync: once its
	// listing is complete and every listed object has an outcome, objects
	// stevedore holds in its scope that the listing did not contain are
	// swept (confirmed gone with a HEAD, then tombstoned). See worker/sweep.
	DeleteMissing bool `json:"delete_missing,omitempty"`
	// AllowMassDelete lets the sweep delete more than the fleet's share
	// limit of the scope (a listing that suddenly misses most objects is
	// refused without it).
	AllowMassDelete bool `json:"allow_mass_delete,omitempty"`
	// Schedule is set on a job a collection's schedule started (the
	// collection's name): its end updates the schedule's last sync.
	Schedule string `json:"schedule,omitempty"`
	// Tick names the schedule tick that started the job (tick.Name): its
	// ID is derived from it, so one tick starts one job.
	Tick string `json:"tick,omitempty"`
	// Sweep marks the message that sweeps the job's scope (SweepSubject),
	// published when the job's last object has an outcome.
	Sweep bool `json:"sweep,omitempty"`
	// Filters leave objects of a bucket or directory job out of its
	// listing (counted, not listed one by one), and its sweep removes what
	// they now exclude.
	Filters *Filters `json:"filters,omitempty"`
	// Lane, StartAfter and Through place a page in the job's listing when
	// the planner split it into lanes listed at once (see worker/plan):
	// Lane is the lane's path ("" the first; a split of lane L makes L+"0"
	// and L+"1"), its listing starts after StartAfter (a lane's first page;
	// later pages use ContinuationToken) and ends at Through, inclusive ("":
	// the end of the bucket).
	Lane       string `json:"lane,omitempty"`
	StartAfter string `json:"start_after,omitempty"`
	Through    string `json:"through,omitempty"`
	// RetryOf is the job a retry job re-runs the failures of.
	RetryOf string `json:"retry_of,omitempty"`
	// Document is the document a delete_document job erases (DocumentID).
	Document  string    `json:"document_id,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

// Validate reports the first missing or invalid field.
func (j *Job) Validate() error {
	for _, f := range []struct{ kind, v string }{{"job_id", j.JobID}, {"org", j.Org}, {"collection", j.Collection}} {
		if err := mustID(f.kind, f.v); err != nil {
			return err
		}
	}
	if err := j.Filters.Validate(); err != nil {
		return err
	}
	if err := ValidChunking(j.ChunkTokens, j.ChunkOverlap); err != nil {
		return err
	}
	if j.Kind == JobRetry {
		if err := mustID("retry_of", j.RetryOf); err != nil {
			return err
		}
	}
	if j.Kind.Erases() || j.Kind == JobRetry {
		if j.IntegrationID != "" {
			if err := mustID("integration_id", j.IntegrationID); err != nil {
				return err
			}
		}
		if j.Kind == JobDeleteDocument && !ValidDocumentID(j.Document) {
			return fmt.Errorf("document_id %q: must be 32 hex digits", j.Document)
		}
		return nil
	}
	if err := mustID("integration_id", j.IntegrationID); err != nil {
		return err
	}
	if j.Bucket == "" {
		return errMissing("bucket")
	}
	switch j.Kind {
	case JobBucket, JobDirectory:
	case JobFile:
		if j.Key == "" {
			return errMissing("key")
		}
	default:
		return fmt.Errorf("kind %q: must be bucket, directory or file", j.Kind)
	}
	if j.Page < 0 || j.Planned < 0 || j.MaxFiles < 0 {
		return fmt.Errorf("page, planned and max_files must not be negative")
	}
	return nil
}

// TaskOp is what a task does to an object.
type TaskOp string

// Task operations.
const (
	OpIndex  TaskOp = "index"
	OpDelete TaskOp = "delete"
)

// Task is one object version to index or delete. It is a pointer to the
// object, never its bytes.
type Task struct {
	V             int    `json:"v"`
	Op            TaskOp `json:"op"`
	JobID         string `json:"job_id,omitempty"` // empty for tasks from S3 notifications
	Org           string `json:"org"`
	Collection    string `json:"collection"`
	IntegrationID string `json:"integration_id"`
	// CredentialRef names the sealed static-key secret this job was submitted
	// with (static-key integrations only; see registry.StaticKeys).
	CredentialRef     string     `json:"credential_ref,omitempty"`
	Bucket            string     `json:"bucket"`
	Region            string     `json:"region"`
	Key               string     `json:"key"`
	ScopePrefix       string     `json:"scope_prefix,omitempty"` // prefix the session policy is scoped to
	VersionID         string     `json:"version_id,omitempty"`
	ETag              string     `json:"etag,omitempty"`
	Size              int64      `json:"size,omitempty"`
	Sequencer         string     `json:"sequencer,omitempty"`
	EventTime         *time.Time `json:"event_time,omitempty"` // the S3 event's time, for tasks from notifications
	SkipExisting      bool       `json:"skip_existing"`
	OverwriteExisting bool       `json:"overwrite_existing"`
	// ReadSettings say how the object is read: extracted, chunked and
	// tokenized.
	ReadSettings
	CustomMetadata json.RawMessage `json:"custom_metadata,omitempty"`
	// Sync is set on the tasks of a sync (a job with DeleteMissing): the
	// object's state records that the job saw it (ObjectState.SeenBy), so
	// the sweep does not take it for a deleted object.
	Sync bool `json:"sync,omitempty"`
	// LastModified is the listing's time for the object (jobs' tasks): with
	// the ETag it tells an unchanged object from one whose metadata alone
	// changed (a copy in place keeps the ETag, not the time).
	LastModified *time.Time `json:"last_modified,omitempty"`
	// SidecarKnown is set when the listing settled whether the object has
	// a sidecar (SidecarETag, "" for none); otherwise the worker asks S3.
	SidecarKnown bool   `json:"sidecar_known,omitempty"`
	SidecarETag  string `json:"sidecar_etag,omitempty"`
	// ViaSidecar is the notification (its version and sequencer) of the
	// sidecar whose change this task applies to its document: it keeps the
	// outcome's ID apart from the document's own notifications.
	ViaSidecar string `json:"-"`
}

// Processing types.
const (
	ProcessingBasic    = "basic"
	ProcessingAdvanced = "advanced"
)

// ReadSettings are how objects are read: extracted, chunked and tokenized.
// Job, Task, JobStatus and a collection's settings embed them (their JSON
// fields are the embedding message's own), so they pass from one to the
// next whole.
type ReadSettings struct {
	ProcessingType string `json:"processing_type,omitempty"` // basic (also when empty) or advanced
	Encoding       string `json:"encoding,omitempty"`        // the tokenizer; empty: cl100k_base
	// ChunkTokens is the most tokens a chunk holds (0: the worker's
	// default); ChunkOverlap how many of them, at most, repeat the end of
	// the chunk before (never splitting a token). Both are part of the
	// chunks' extractor version (IDChunking).
	ChunkTokens  int `json:"chunk_size_tokens,omitempty"`
	ChunkOverlap int `json:"chunk_overlap_tokens,omitempty"`
	// ObjectTags asks for the objects' S3 tags in their metadata
	// (include_object_tags; the role needs s3:GetObjectTagging).
	ObjectTags bool `json:"include_object_tags,omitempty"`
	// OCRLanguages are the languages scans and images are read in
	// (Tesseract's names, "+"-joined; empty: the worker's default).
	OCRLanguages string `json:"ocr_languages,omitempty"`
}

// ValidProcessingType reports whether a request or route may name p (""
// is basic).
func ValidProcessingType(p string) bool {
	return p == "" || p == ProcessingBasic || p == ProcessingAdvanced
}

// ocrLanguages: up to 8 Tesseract language names (eng, deu, chi_sim,
// deu_latf …) joined by "+".
var ocrLanguages = regexp.MustCompile(`^[a-z]{3}(_[a-z]{2,8})?(\+[a-z]{3}(_[a-z]{2,8})?){0,7}$`)

// ValidOCRLanguages reports whether a request may name langs ("" is the
// default).
func ValidOCRLanguages(langs string) bool { return langs == "" || ocrLanguages.MatchString(langs) }

// Structured reports whether the task asks for structured extraction
// (processing_type advanced).
func (t *Task) Structured() bool { return t.ProcessingType == ProcessingAdvanced }

// Validate reports the first missing or invalid field.
func (t *Task) Validate() error {
	switch t.Op {
	case OpIndex, OpDelete:
	default:
		return fmt.Errorf("op %q: must be index or delete", t.Op)
	}
	if t.JobID != "" {
		if err := mustID("job_id", t.JobID); err != nil {
			return err
		}
	}
	for _, f := range []struct{ kind, v string }{{"org", t.Org}, {"collection", t.Collection}, {"integration_id", t.IntegrationID}} {
		if err := mustID(f.kind, f.v); err != nil {
			return err
		}
	}
	if t.Bucket == "" {
		return errMissing("bucket")
	}
	if t.Key == "" {
		return errMissing("key")
	}
	return nil
}

// Chunk is one piece of an object's text with its exact token count.
// ChunkID is deterministic (see ChunkID): re-indexing the same object
// version yields the same IDs.
type Chunk struct {
	V                int    `json:"v"`
	ChunkID          string `json:"chunk_id"`
	Org              string `json:"org"`
	Collection       string `json:"collection"`
	JobID            string `json:"job_id,omitempty"`
	Bucket           string `json:"bucket"`
	Key              string `json:"key"`
	VersionID        string `json:"version_id,omitempty"`
	ETag             string `json:"etag"`
	Index            int    `json:"index"`       // 0-based position in the object
	Total            int    `json:"total"`       // chunks of this object version; 0 when not known at publish time (streamed objects of over one batch): the commit record carries it
	ByteOffset       int64  `json:"byte_offset"` // of Text in the extracted text
	Text             string `json:"text"`
	TokenCount       int    `json:"token_count"`
	Encoding         string `json:"encoding"`
	ExtractorVersion string `json:"extractor_version"`
	ContentType      string `json:"content_type,omitempty"` // as detected, e.g. text/html
	// PageStart and PageEnd are the pages (PDF) or slides (PPTX) the text
	// spans, 1-based; absent for formats without pages.
	PageStart int `json:"page_start,omitempty"`
	PageEnd   int `json:"page_end,omitempty"`
	// HeadingPath is the headings the chunk's text is under, outermost
	// first (or the slide title, or the sheet name); processing_type
	// advanced only.
	HeadingPath []string `json:"heading_path,omitempty"`
	// OCR is set when some of the chunk's text was read from an image
	// (a scanned page, an image file) by OCR; OCRConfidence is the mean
	// word confidence (0–1) of those pages, for downstream to weigh it.
	OCR           bool    `json:"ocr,omitempty"`
	OCRConfidence float64 `json:"ocr_confidence,omitempty"`
	// HeaderRow is a CSV or TSV file's first line, on every chunk but the
	// first (which holds it), so that each chunk's rows keep their column
	// names.
	HeaderRow      string          `json:"header_row,omitempty"`
	CustomMetadata json.RawMessage `json:"custom_metadata,omitempty"`
	// Source is what S3 answered for the object version the chunk is from
	// (not what an event claimed).
	Source *Source `json:"source,omitempty"`
	// Metadata is the document's metadata, for filtering and citing: the
	// job's (collection's, route's) custom_metadata overlaid by the
	// object's own S3 user metadata (names normalised, values bounded).
	Metadata json.RawMessage `json:"metadata,omitempty"`
}

// Source is where a chunk's text comes from, as S3 answered the GET.
type Source struct {
	URI          string     `json:"uri"` // s3://bucket/key
	VersionID    string     `json:"version_id,omitempty"`
	ETag         string     `json:"etag,omitempty"`
	LastModified *time.Time `json:"last_modified,omitempty"`
	Size         int64      `json:"size"`
	ContentType  string     `json:"content_type,omitempty"` // as S3 stores it (Chunk.ContentType is as detected)
}

// Validate reports the first missing or invalid field.
func (c *Chunk) Validate() error {
	if c.ChunkID == "" {
		return errMissing("chunk_id")
	}
	if c.Bucket == "" || c.Key == "" {
		return errMissing("bucket/key")
	}
	if c.Index < 0 || (c.Total > 0 && c.Index >= c.Total) || c.TokenCount < 0 {
		return fmt.Errorf("index %d, total %d, token_count %d out of range", c.Index, c.Total, c.TokenCount)
	}
	return nil
}

// Tombstone tells downstream consumers to drop the chunks of an object
// version (on delete, or when a new version replaces it).
type Tombstone struct {
	V          int      `json:"v"`
	Tombstone  bool     `json:"tombstone"` // always true; distinguishes it from a Chunk on CHUNKS
	Org        string   `json:"org"`
	Collection string   `json:"collection"`
	Bucket     string   `json:"bucket"`
	Key        string   `json:"key"`
	VersionID  string   `json:"version_id,omitempty"`
	ETag       string   `json:"etag,omitempty"`
	ChunkIDs   []string `json:"chunk_ids"`
	Reason     string   `json:"reason"` // "deleted", "replaced"
	// Part and Parts number the tombstones of one object version when its
	// chunk IDs need more than one message (see Tombstone.Split): part
	// Part of Parts, from 1; both absent when one message holds them all.
	Part  int       `json:"part,omitempty"`
	Parts int       `json:"parts,omitempty"`
	At    time.Time `json:"at"`
}

// TombstoneMaxIDs is the most chunk IDs one tombstone lists: about 310 KB
// of JSON, well under MaxMessageBytes. A 100,000-chunk object (≈ 200 MB of
// text) is tombstoned in 13 messages.
const TombstoneMaxIDs = 8192

// Msgs are the messages of t on ChunkSubject, split into parts that fit a
// message (Split), each with a deterministic ID: id's part at generation
// gen (the object state's revision the tombstone follows).
func (t *Tombstone) Msgs(id string, gen uint64) []Out {
	parts := t.Split()
	out := make([]Out, len(parts))
	for i, p := range parts {
		out[i] = Out{Subject: ChunkSubject(t.Org, t.Collection), MsgID: GenMsgID(TombstonePartID(id, p.Part), gen), Msg: p}
	}
	return out
}

// Split returns t as tombstones of at most TombstoneMaxIDs chunk IDs each,
// numbered Part 1 … Parts when there are several; t itself when it fits.
// Each part is a whole tombstone: a consumer applies each as it comes.
func (t *Tombstone) Split() []*Tombstone {
	if len(t.ChunkIDs) <= TombstoneMaxIDs {
		return []*Tombstone{t}
	}
	parts := (len(t.ChunkIDs) + TombstoneMaxIDs - 1) / TombstoneMaxIDs
	out := make([]*Tombstone, 0, parts)
	for i := 0; i < parts; i++ {
		p := *t
		p.ChunkIDs = t.ChunkIDs[i*TombstoneMaxIDs : min(len(t.ChunkIDs), (i+1)*TombstoneMaxIDs)]
		p.Part, p.Parts = i+1, parts
		out = append(out, &p)
	}
	return out
}

// TombstonePartID is the ID of part of a tombstone whose ID is id: id
// itself for a tombstone in one message or its first part, so that the IDs
// of tombstones that fit are what they always were.
func TombstonePartID(id string, part int) string {
	if part <= 1 {
		return id
	}
	return id + "#" + strconv.Itoa(part)
}

// Validate reports the first missing or invalid field.
func (t *Tombstone) Validate() error {
	if !t.Tombstone {
		return errMissing("tombstone")
	}
	if t.Bucket == "" || t.Key == "" {
		return errMissing("bucket/key")
	}
	return nil
}

// Commit makes one object version's chunks visible downstream, all at once.
// A worker publishes the chunks of a version (possibly in several batches,
// since bodies are streamed), then this record on the same subject. The
// contract for consumers of CHUNKS: a chunk is visible only once a commit
// with the same bucket, key, version (VersionID, else ETag) and extractor
// version has arrived, and then exactly the chunks with Index < Chunks are.
// Chunks of a version that never gets a commit (a worker crashed; the task
// is redelivered and publishes the same IDs again) are never shown. When a
// version replaces another, the tombstones of the replaced version's chunks
// (in parts of at most TombstoneMaxIDs IDs) are acknowledged before the new
// version's commit is published: a consumer never shows both versions, and
// between the two the object is briefly absent.
type Commit struct {
	V                int       `json:"v"`
	Commit           bool      `json:"commit"` // always true; distinguishes it from a Chunk or Tombstone
	Org              string    `json:"org"`
	Collection       string    `json:"collection"`
	JobID            string    `json:"job_id,omitempty"`
	Bucket           string    `json:"bucket"`
	Key              string    `json:"key"`
	VersionID        string    `json:"version_id,omitempty"`
	ETag             string    `json:"etag,omitempty"`
	ExtractorVersion string    `json:"extractor_version"`
	ContentType      string    `json:"content_type,omitempty"`
	Chunks           int       `json:"chunks"`
	Tokens           int64     `json:"tokens"`
	At               time.Time `json:"at"`
}

// Validate reports the first missing or invalid field.
func (c *Commit) Validate() error {
	if !c.Commit {
		return errMissing("commit")
	}
	if c.Bucket == "" || c.Key == "" {
		return errMissing("bucket/key")
	}
	if c.Chunks < 0 {
		return fmt.Errorf("chunks %d: must not be negative", c.Chunks)
	}
	return nil
}

// CommitID is the ID of the commit record of one object version (its
// Nats-Msg-Id is GenMsgID of it).
func CommitID(org, collection, bucket, key, version, extractorVersion string) string {
	return "commit:" + hashID(org, collection, bucket, key, version, extractorVersion)
}

// Outcome is what happened to one object.
type Outcome string

// Object outcomes.
const (
	OutcomeIndexed Outcome = "indexed"
	OutcomeSkipped Outcome = "skipped"
	OutcomeFailed  Outcome = "failed"
	OutcomeDeleted Outcome = "deleted"
)

// ObjectEvent records the final outcome of one task. EventID is
// deterministic per (job, object), so a retried task folds into job counters
// once.
type ObjectEvent struct {
	V          int       `json:"v"`
	EventID    string    `json:"event_id"`
	JobID      string    `json:"job_id,omitempty"`
	Org        string    `json:"org"`
	Collection string    `json:"collection"`
	Bucket     string    `json:"bucket"`
	Key        string    `json:"key"`
	ETag       string    `json:"etag,omitempty"`
	Outcome    Outcome   `json:"outcome"`
	Reason     string    `json:"reason,omitempty"`      // why skipped or failed
	ErrorClass string    `json:"error_class,omitempty"` // for failures
	ErrorCode  string    `json:"error_code,omitempty"`  // for failures: a stable code (see ErrorCode)
	Chunks     int       `json:"chunks"`
	Tokens     int64     `json:"tokens"`
	Bytes      int64     `json:"bytes"`
	At         time.Time `json:"at"`
}

// Validate reports the first missing or invalid field.
func (e *ObjectEvent) Validate() error {
	if e.EventID == "" {
		return errMissing("event_id")
	}
	switch e.Outcome {
	case OutcomeIndexed, OutcomeSkipped, OutcomeFailed, OutcomeDeleted:
	default:
		return fmt.Errorf("outcome %q unknown", e.Outcome)
	}
	return mustID("org", e.Org)
}

// JobEventType names a job lifecycle event.
type JobEventType string

// Job lifecycle event types.
const (
	JobPlanned JobEventType = "planned" // one page planned: Tasks tasks published; Last when no page follows
	JobFailed  JobEventType = "failed"  // the job cannot proceed (Reason, ErrorClass)
	JobSwept   JobEventType = "swept"   // the sweep of a sync ended (Sweep)
	JobQueued  JobEventType = "queued"  // one object queued by a retry job (counts in the total)
)

// JobEvent records job lifecycle progress.
type JobEvent struct {
	V          int          `json:"v"`
	EventID    string       `json:"event_id"`
	JobID      string       `json:"job_id"`
	Org        string       `json:"org"`
	Collection string       `json:"collection"`
	Type       JobEventType `json:"type"`
	Page       int          `json:"page"`
	Tasks      int          `json:"tasks"`
	Excluded   int          `json:"excluded,omitempty"` // listed objects the job's filters left out
	Last       bool         `json:"last"`
	// Cut is set on the last page of a listing that max_files stopped
	// with keys left: the listing is incomplete, so nothing is swept.
	Cut bool `json:"cut,omitempty"`
	// Lane is the page's lane (Job.Lane); Split, when the page split its
	// lane, names the two lanes it published a first page of instead of
	// its lane's next page (Last is then false).
	Lane       string    `json:"lane,omitempty"`
	Split      []string  `json:"split,omitempty"`
	Sweep      *Sweep    `json:"sweep,omitempty"` // JobSwept
	Reason     string    `json:"reason,omitempty"`
	ErrorClass string    `json:"error_class,omitempty"`
	ErrorCode  string    `json:"error_code,omitempty"`
	Hint       string    `json:"hint,omitempty"`
	At         time.Time `json:"at"`
}

// Validate reports the first missing or invalid field.
func (e *JobEvent) Validate() error {
	if e.EventID == "" {
		return errMissing("event_id")
	}
	if err := mustID("job_id", e.JobID); err != nil {
		return err
	}
	switch e.Type {
	case JobPlanned, JobFailed, JobQueued:
	case JobSwept:
		if e.Sweep == nil {
			return errMissing("sweep")
		}
	default:
		return fmt.Errorf("type %q unknown", e.Type)
	}
	return nil
}

// DeadLetter is the payload of a message that could not be processed, with
// the reason. Payload holds the original bytes (base64 in JSON).
type DeadLetter struct {
	V          int    `json:"v"`
	Stream     string `json:"stream"`
	Subject    string `json:"subject"`
	Sequence   uint64 `json:"sequence,omitempty"`
	Deliveries uint64 `json:"deliveries,omitempty"`
	Reason     string `json:"reason"`
	ErrorClass string `json:"error_class"`
	// Records lists, for an SQS message, each of its notification records
	// that could not be used: one dead letter per message, its body
	// (Payload) once, however many of its records failed.
	Records []DeadRecord `json:"records,omitempty"`
	Payload []byte       `json:"payload"`
	At      time.Time    `json:"at"`
}

// DeadRecord is one unusable record of a dead-lettered SQS message.
type DeadRecord struct {
	Index      int    `json:"index"` // 0-based position in the message's records
	Reason     string `json:"reason"`
	ErrorClass string `json:"error_class"`
}

// Validate reports the first missing or invalid field.
func (d *DeadLetter) Validate() error {
	if d.Reason == "" {
		return errMissing("reason")
	}
	if d.Subject == "" {
		return errMissing("subject")
	}
	return nil
}

type validator interface{ Validate() error }

func errMissing(field string) error { return fmt.Errorf("missing required field %s", field) }

// decode is the one strict decoder behind every Decode function.
func decode[T any, P interface {
	*T
	validator
}](typ string, data []byte) (*T, error) {
	if len(data) > MaxMessageBytes {
		return nil, &DecodeError{Type: typ, Reason: "too_large", Detail: fmt.Sprintf("%d bytes > %d", len(data), MaxMessageBytes)}
	}
	var head struct {
		V *int `json:"v"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return nil, &DecodeError{Type: typ, Reason: "invalid_json", Detail: err.Error()}
	}
	if head.V == nil {
		return nil, &DecodeError{Type: typ, Reason: "missing_field", Detail: "missing required field v"}
	}
	if *head.V != Version {
		return nil, &DecodeError{Type: typ, Reason: "unsupported_version", Detail: fmt.Sprintf("v=%d, this build reads v=%d", *head.V, Version)}
	}
	v := P(new(T))
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(v); err != nil {
		return nil, &DecodeError{Type: typ, Reason: "invalid_json", Detail: err.Error()}
	}
	if err := v.Validate(); err != nil {
		return nil, &DecodeError{Type: typ, Reason: "invalid_field", Detail: err.Error()}
	}
	return (*T)(v), nil
}

// DecodeJob strictly decodes a Job.
func DecodeJob(data []byte) (*Job, error) { return decode[Job]("job", data) }

// DecodeTask strictly decodes a Task.
func DecodeTask(data []byte) (*Task, error) { return decode[Task]("task", data) }

// DecodeChunk strictly decodes a Chunk.
func DecodeChunk(data []byte) (*Chunk, error) { return decode[Chunk]("chunk", data) }

// DecodeTombstone strictly decodes a Tombstone.
func DecodeTombstone(data []byte) (*Tombstone, error) { return decode[Tombstone]("tombstone", data) }

// DecodeCommit strictly decodes a Commit.
func DecodeCommit(data []byte) (*Commit, error) { return decode[Commit]("commit", data) }

// DecodeObjectEvent strictly decodes an ObjectEvent.
func DecodeObjectEvent(data []byte) (*ObjectEvent, error) {
	return decode[ObjectEvent]("object_event", data)
}

// DecodeJobEvent strictly decodes a JobEvent.
func DecodeJobEvent(data []byte) (*JobEvent, error) { return decode[JobEvent]("job_event", data) }

// DecodeDeadLetter strictly decodes a DeadLetter.
func DecodeDeadLetter(data []byte) (*DeadLetter, error) {
	return decode[DeadLetter]("dead_letter", data)
}

// Encode marshals a message, setting V to Version. It fails for messages
// larger than MaxMessageBytes.
func Encode(msg any) ([]byte, error) {
	switch m := msg.(type) {
	case *Job:
		m.V = Version
	case *Task:
		m.V = Version
	case *Chunk:
		m.V = Version
	case *Tombstone:
		m.V = Version
		m.Tombstone = true
	case *Commit:
		m.V = Version
		m.Commit = true
	case *ObjectEvent:
		m.V = Version
	case *JobEvent:
		m.V = Version
	case *DeadLetter:
		m.V = Version
	case *AuditRecord:
		m.V = Version
	}
	data, err := json.Marshal(msg)
	if err != nil {
		return nil, err
	}
	if len(data) > MaxMessageBytes {
		return nil, fmt.Errorf("encode %T: %d bytes exceeds %d", msg, len(data), MaxMessageBytes)
	}
	return data, nil
}
