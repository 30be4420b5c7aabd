package schema

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
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

// IDExtractor is the extractor_version recorded on chunks, commits and
// object state, and part of their IDs: the extractor's version, followed by
// "@" and the tokenizer when it is not the default cl100k_base (chunk
// boundaries depend on it), so that re-indexing with another tokenizer never
// reuses an ID for different text. Default-tokenizer IDs are unchanged.
func IDExtractor(extractorVersion, encoding string) string {
	if encoding == "" || encoding == DefaultEncoding {
		return extractorVersion
	}
	return extractorVersion + "@" + encoding
}

// Bounds of a request's chunking.
const (
	MinChunkTokens = 64
	MaxChunkTokens = 8192
)

// ValidChunking reports whether a chunk size (0: the default) and overlap
// may be asked for: a size of MinChunkTokens to MaxChunkTokens, an overlap
// below half of it (and only with a size).
func ValidChunking(size, overlap int) error {
	switch {
	case size != 0 && (size < MinChunkTokens || size > MaxChunkTokens):
		return fmt.Errorf("chunk_size_tokens %d: want %d to %d", size, MinChunkTokens, MaxChunkTokens)
	case overlap < 0 || (overlap > 0 && size == 0):
		return fmt.Errorf("chunk_overlap_tokens %d: give it with chunk_size_tokens, not negative", overlap)
	case overlap > 0 && overlap*2 > size:
		return fmt.Errorf("chunk_overlap_tokens %d: want at most half of chunk_size_tokens (%d)", overlap, size)
	}
	return nil
}

// IDChunking is the extractor version (IDExtractor's) of chunks cut to a
// requested size and overlap: "/t<size>" and "o<overlap>" appended, so a
// change of either re-indexes and never reuses a chunk ID for other text.
// The default chunking leaves it as it was.
func IDChunking(extractor string, size, overlap int) string {
	if c := Chunking(size, overlap); c != "" {
		return extractor + "/" + c
	}
	return extractor
}

// Chunking names a requested chunk size and overlap ("t256", "t256o32";
// "" for the default), as object states record it.
func Chunking(size, overlap int) string {
	if size == 0 {
		return ""
	}
	s := "t" + strconv.Itoa(size)
	if overlap > 0 {
		s += "o" + strconv.Itoa(overlap)
	}
	return s
}

// Tokenizers a request may name; DefaultEncoding when it names none.
const (
	DefaultEncoding = "cl100k_base"
	EncodingO200k   = "o200k_base"
)

// ValidEncoding reports whether a request or route may name the tokenizer
// e ("" is the default).
func ValidEncoding(e string) bool { return e == "" || e == DefaultEncoding || e == EncodingO200k }

// ObjectKey is the object-state KV key for one object of a collection: its
// document's ID under the collection's prefix.
func ObjectKey(org, collection, bucket, key string) string {
	return ObjectKeyPrefix(org, collection) + DocumentID(bucket, key)
}

// DocumentID is the stable ID of the document an object is in every
// collection: derived from bucket and key only, so that notifications, jobs
// and the API name it alike without a lookup, and the object-state key of a
// document is ObjectKeyPrefix + its ID.
func DocumentID(bucket, key string) string { return hashID(bucket, key) }

// ValidDocumentID reports whether s is shaped like a DocumentID (32
// lowercase hex digits).
func ValidDocumentID(s string) bool {
	if len(s) != 32 {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// EraseEventID is the ID of the deleted outcome of one document an erase
// job (a document delete, a wipe, a collection delete) removed: the state
// revision that marked it is part of it, so a document indexed again and
// erased again by the same job is counted again.
func EraseEventID(jobID, bucket, key string, rev uint64) string {
	return ObjectEventID(jobID, OpDelete, bucket, key, "erase@"+strconv.FormatUint(rev, 10))
}

// QueuedEventID is the ID of the event that queues document documentID
// for retry job jobID: once per object, however often the job is planned.
func QueuedEventID(jobID, documentID string) string { return "queued:" + jobID + ":" + documentID }

// RetryMsgID is the Nats-Msg-Id of page n of a retry job (see EraseMsgID).
func RetryMsgID(jobID string, page int) string { return "re" + EraseMsgID(jobID, page) }

// ErasedEventID is the ID of the event that ends an erase job.
func ErasedEventID(jobID string) string { return "erased:" + jobID }

// EraseMsgID is the Nats-Msg-Id of page n of an erase job (a page erases
// up to a bound, then publishes the next).
func EraseMsgID(jobID string, page int) string {
	if page == 0 {
		return "erase:" + jobID
	}
	return "erase:" + jobID + ":" + strconv.Itoa(page)
}

// ObjectKeyPrefix starts the object-state keys of one collection.
func ObjectKeyPrefix(org, collection string) string { return org + "." + collection + "." }

// SweepMsgID is the Nats-Msg-Id of a job's sweep.
func SweepMsgID(jobID string) string { return "sweep:" + jobID }

// SweptEventID is the ID of the event that ends a job's sweep.
func SweptEventID(jobID string) string { return "swept:" + jobID }

// JobPageMsgID is the Nats-Msg-Id of page n of a job.
func JobPageMsgID(jobID string, page int) string { return "job:" + jobID + ":" + strconv.Itoa(page) }

// LanePageMsgID is the Nats-Msg-Id of page n of a job's lane (JobPageMsgID
// for the first lane, "").
func LanePageMsgID(jobID, lane string, page int) string {
	if lane == "" {
		return JobPageMsgID(jobID, page)
	}
	return JobPageMsgID(jobID, page) + ":" + lane
}

// TaskMsgID is the Nats-Msg-Id of the task for one object of a job (tasks
// from S3 notifications use EventTaskMsgID).
func TaskMsgID(jobID, bucket, key, version, sequencer string) string {
	return "task:" + hashID(jobID, bucket, key, version, sequencer)
}

// ObjectEventID is the ID (and Nats-Msg-Id) of the outcome event of one
// task: one per (job, operation, object version/sequencer), whatever the
// outcome, so a retried task folds into the job once. The operation is part
// of it: a create and a delete with the same sequencer are two events.
func ObjectEventID(jobID string, op TaskOp, bucket, key, version string) string {
	return "obj:" + hashID(jobID, string(op), bucket, key, version)
}

// Prefixes of Nats-Msg-Ids that are not hashes of their own.
const (
	TombstoneIDPrefix = "tomb:"   // a tombstone: the ID of its first chunk
	DeadIDPrefix      = "dead:"   // a dead letter: source stream and sequence
	ReplayIDPrefix    = "replay:" // a dead letter replayed to its subject
)

// GenMsgID is the Nats-Msg-Id of a CHUNKS message (chunk, commit or
// tombstone) whose own ID is id, published by a task that read generation
// gen of the object's state (its KV revision; 0 when there was none).
//
// Why the generation: chunk IDs are derived from the content version only,
// so an object that returns to earlier content (a revert, a delete and
// re-upload) has the same chunk and commit IDs as before. With the ID alone
// as Nats-Msg-Id, JetStream would drop them as duplicates for the whole
// duplicate window while the tombstone of the version in between went
// through: the object would vanish. A redelivered task reads the same
// generation (the state is saved last), so redeliveries still deduplicate;
// any later re-index reads a later one and is published.
func GenMsgID(id string, gen uint64) string { return id + "@" + strconv.FormatUint(gen, 10) }

// TombstoneID is the ID of a tombstone whose first chunk is firstChunkID.
func TombstoneID(firstChunkID string) string { return TombstoneIDPrefix + firstChunkID }

// DeadMsgID is the Nats-Msg-Id of the dead letter of message seq of stream:
// one per message, however often it is given up on.
func DeadMsgID(stream string, seq uint64) string {
	return DeadIDPrefix + stream + ":" + strconv.FormatUint(seq, 10)
}

// ReplayMsgID is the Nats-Msg-Id of dead letter seq replayed to its subject.
func ReplayMsgID(deadSeq uint64) string { return ReplayIDPrefix + strconv.FormatUint(deadSeq, 10) }

// PlannedEventID is the ID of the "planned" event of page n of a job.
func PlannedEventID(jobID string, page int) string {
	return "planned:" + jobID + ":" + strconv.Itoa(page)
}

// LanePlannedEventID is the ID of the "planned" event of page n of a job's
// lane (PlannedEventID for the first lane, "").
func LanePlannedEventID(jobID, lane string, page int) string {
	if lane == "" {
		return PlannedEventID(jobID, page)
	}
	return PlannedEventID(jobID, page) + ":" + lane
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
