package schema

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// keySentinel stands for the key while a page's shared fields are encoded;
// encoding/json writes it as \u0000page-key\u0000, which no other field of a
// task holds (NewTaskPage checks).
const keySentinel = "\x00page-key\x00"

// A TaskPage encodes the tasks of one listing page. The fields its tasks
// share (the job's, the page's prefix) are encoded once; each task's own
// (key, ETag, size, time, sidecar) are written beside its key. The result
// decodes to what Encode of the same Task gives, in a different field
// order (TestTaskPageDecodesAsEncode, FuzzTaskPage): the planner encodes
// a million tasks per million keys, and reflection was most of that.
type TaskPage struct {
	head, tail []byte // the shared fields' JSON before and after the key's value
}

// ListedObject is what a listing says of one object: a task's own fields.
type ListedObject struct {
	Key, ETag    string
	Size         int64
	LastModified *time.Time
	// SidecarKnown, SidecarETag: Task's.
	SidecarKnown bool
	SidecarETag  string
}

// NewTaskPage returns the encoder of tasks that are base with a
// ListedObject's fields set; base's own values of those fields are ignored.
func NewTaskPage(base Task) (*TaskPage, error) {
	base.Key, base.ETag, base.Size, base.LastModified, base.SidecarKnown, base.SidecarETag = keySentinel, "", 0, nil, false, ""
	data, err := Encode(&base)
	if err != nil {
		return nil, err
	}
	// keySentinel as Encode writes it, and the key's field holding it.
	const sentinel = `\u0000page-key\u0000`
	const field, placeholder = `"key":`, `"` + sentinel + `"`
	if bytes.Count(data, []byte(sentinel)) != 1 {
		return nil, errors.New("task page: the shared fields hold the key's placeholder")
	}
	i := bytes.Index(data, []byte(field+placeholder))
	return &TaskPage{head: data[:i+len(field)], tail: data[i+len(field)+len(placeholder):]}, nil
}

// Encode encodes the task of o.
func (p *TaskPage) Encode(o ListedObject) ([]byte, error) {
	b := make([]byte, 0, len(p.head)+len(p.tail)+len(o.Key)+len(o.ETag)+len(o.SidecarETag)+96)
	b = appendJSONString(append(b, p.head...), o.Key)
	if o.ETag != "" {
		b = appendJSONString(append(b, `,"etag":`...), o.ETag)
	}
	if o.Size != 0 {
		b = strconv.AppendInt(append(b, `,"size":`...), o.Size, 10)
	}
	if o.LastModified != nil {
		var err error
		if b, err = appendJSONTime(append(b, `,"last_modified":`...), o.LastModified); err != nil {
			return nil, fmt.Errorf("encode task of %q: %w", o.Key, err)
		}
	}
	if o.SidecarKnown {
		b = append(b, `,"sidecar_known":true`...)
	}
	if o.SidecarETag != "" {
		b = appendJSONString(append(b, `,"sidecar_etag":`...), o.SidecarETag)
	}
	b = append(b, p.tail...)
	if len(b) > MaxMessageBytes {
		return nil, fmt.Errorf("encode task of %q: %d bytes exceeds %d", o.Key, len(b), MaxMessageBytes)
	}
	return b, nil
}

// appendJSONString appends s as encoding/json writes it: printable ASCII
// with quotes and backslashes escaped, anything else through encoding/json
// itself.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x80 || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always encodes
			return append(b, q...)
		}
	}
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '"' || c == '\\' {
			b = append(b, '\\')
		}
		b = append(b, s[i])
	}
	return append(b, '"')
}

// appendJSONTime appends t as its MarshalJSON writes it; a time in UTC
// (S3's) without the allocation.
func appendJSONTime(b []byte, t *time.Time) ([]byte, error) {
	if t.Location() != time.UTC || t.Year() < 0 || t.Year() > 9999 {
		data, err := t.MarshalJSON()
		return append(b, data...), err
	}
	return append(t.AppendFormat(append(b, '"'), time.RFC3339Nano), '"'), nil
}
