package schema

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"
)

// hashID joins parts with NUL (which cannot occur in S3 keys or our IDs, so
// the join is unambiguous) and returns the first 128 bits of SHA-256 in hex.
func hashID(parts ...string) string {
	h := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	return hex.EncodeToString(h[:16])
}

// ChunkID derives a chunk's ID from everything that determines its content:
// re-indexing the same object version with the same extractor yields the same
// IDs, so downstream consumers can deduplicate by ID. version is the S3
// version ID when the bucket is versioned, else the ETag.
func ChunkID(org, collection, bucket, key, version, extractorVersion string, index int) string {
	return "ch_" + hashID(org, collection, bucket, key, version, extractorVersion, strconv.Itoa(index))
}

// ObjectKey is the object-state KV key for one object of a collection.
func ObjectKey(org, collection, bucket, key string) string {
	return org + "." + collection + "." + hashID(bucket, key)
}

// JobPageMsgID is the Nats-Msg-Id of page n of a job.
func JobPageMsgID(jobID string, page int) string { return "job:" + jobID + ":" + strconv.Itoa(page) }

// TaskMsgID is the Nats-Msg-Id of the task for one object of a job (tasks
// from S3 notifications use EventTaskMsgID).
func TaskMsgID(jobID, bucket, key, version, sequencer string) string {
	return "task:" + hashID(jobID, bucket, key, version, sequencer)
}

// ObjectEventID is the ID (and Nats-Msg-Id) of the outcome event of one
// object of a job; one per object, whatever the outcome, so a retried task
// folds into the job once.
func ObjectEventID(jobID, bucket, key, version string) string {
	return "obj:" + hashID(jobID, bucket, key, version)
}

// PlannedEventID is the ID of the "planned" event of page n of a job.
func PlannedEventID(jobID string, page int) string {
	return "planned:" + jobID + ":" + strconv.Itoa(page)
}

// JobFailedEventID is the ID of the "failed" event of a job.
func JobFailedEventID(jobID string) string { return "failed:" + jobID }

// SequencerLess reports whether S3 sequencer a is older than b (for one key).
// Sequencers are hex strings of varying length: as S3's documentation says,
// left-pad the shorter with zeros, then compare lexicographically. An empty
// sequencer is older than any other.
func SequencerLess(a, b string) bool {
	a, b = strings.ToUpper(a), strings.ToUpper(b)
	n := max(len(a), len(b))
	a = strings.Repeat("0", n-len(a)) + a
	b = strings.Repeat("0", n-len(b)) + b
	return a < b
}

// EventTaskMsgID is the Nats-Msg-Id of the task for one S3 notification
// record: bucket, key, version and sequencer identify the event, so SQS
// redeliveries and duplicate notifications publish nothing twice.
func EventTaskMsgID(org, collection, bucket, key, version, sequencer string) string {
	return "evtask:" + hashID(org, collection, bucket, key, version, sequencer)
}
