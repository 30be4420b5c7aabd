package collections

import (
	"cmp"
	"encoding/json"
	"path"
	"strings"
	"time"

	"github.com/stevedore-dev/stevedore/schema"
)

// DocumentView is a document as the API and the CLI show it (Captain's shape, with
// stevedore's status and counts).
type DocumentView struct {
	DocumentID     string       `json:"document_id"`
	CollectionName string       `json:"collection_name"`
	Status         string       `json:"status"`
	Reason         string       `json:"reason,omitempty"`
	ErrorCode      string       `json:"error_code,omitempty"`
	ChunkCount     int          `json:"chunk_count"`
	TokenCount     int64        `json:"token_count"`
	Metadata       DocumentMeta `json:"metadata"`
	JobID          string       `json:"job_id,omitempty"` // the job that last wrote it (none for S3 notifications)
	UpdatedAt      time.Time    `json:"updated_at"`
}

// DocumentMeta is what is known of the document's object.
type DocumentMeta struct {
	Filename         string `json:"filename"`
	FileType         string `json:"file_type"`
	FileSize         int64  `json:"file_size,omitempty"`
	MimeType         string `json:"mime_type,omitempty"`
	URI              string `json:"uri"`
	Bucket           string `json:"bucket"`
	Key              string `json:"key"`
	ETag             string `json:"etag,omitempty"`
	VersionID        string `json:"version_id,omitempty"`
	ExtractorVersion string `json:"extractor_version,omitempty"`
	ProcessingType   string `json:"processing_type,omitempty"`
}

// View is st as a document of collection.
func View(collection string, st *schema.ObjectState) *DocumentView {
	return &DocumentView{DocumentID: schema.DocumentID(st.Bucket, st.Key), CollectionName: collection, Status: DocStatus(st),
		Reason: st.Reason, ErrorCode: st.ErrorCode, ChunkCount: st.Chunks, TokenCount: st.Tokens, JobID: st.JobID, UpdatedAt: st.UpdatedAt,
		Metadata: DocumentMeta{Filename: path.Base(st.Key), FileType: strings.TrimPrefix(path.Ext(st.Key), "."), FileSize: st.Size,
			MimeType: st.ContentType, URI: "s3://" + st.Bucket + "/" + st.Key, Bucket: st.Bucket, Key: st.Key, ETag: st.ETag,
			VersionID: st.VersionID, ExtractorVersion: st.ExtractorVersion, ProcessingType: cmp.Or(st.ProcessingType, schema.ProcessingBasic)}}
}

// ChunkView is one visible chunk of a document, as the API and the CLI show it.
type ChunkView struct {
	ChunkIndex    int             `json:"chunk_index"`
	ChunkID       string          `json:"chunk_id"`
	Content       string          `json:"content"`
	TokenCount    int             `json:"token_count"`
	ByteOffset    int64           `json:"byte_offset"`
	PageStart     int             `json:"page_start,omitempty"`
	PageEnd       int             `json:"page_end,omitempty"`
	HeadingPath   []string        `json:"heading_path,omitempty"`
	HeaderRow     string          `json:"header_row,omitempty"`
	Metadata      json.RawMessage `json:"metadata,omitempty"` // the document's metadata the chunk carries (its custom metadata in chunks of earlier versions)
	OCR           bool            `json:"ocr,omitempty"`
	OCRConfidence float64         `json:"ocr_confidence,omitempty"`
}

// ChunkViewOf is ch as shown.
func ChunkViewOf(ch *schema.Chunk) ChunkView {
	meta := ch.Metadata
	if len(meta) == 0 {
		meta = ch.CustomMetadata
	}
	return ChunkView{ChunkIndex: ch.Index, ChunkID: ch.ChunkID, Content: ch.Text, TokenCount: ch.TokenCount, ByteOffset: ch.ByteOffset,
		PageStart: ch.PageStart, PageEnd: ch.PageEnd, HeadingPath: ch.HeadingPath, HeaderRow: ch.HeaderRow, Metadata: meta, OCR: ch.OCR, OCRConfidence: ch.OCRConfidence}
}
