package index

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/worker/creds"
)

// sidecar is a document's parsed metadata file (schema.SidecarSuffix).
type sidecar struct {
	etag      string
	attrs     map[string]any // the attributes, values unwrapped
	sourceURI string         // Kendra's _source_uri: the URI chunks cite instead of s3://
}

// Bounds of a sidecar's attributes (tenant input).
const (
	maxSidecarKeys   = 32
	maxSidecarList   = 32
	sidecarSourceKey = "_source_uri"
)

// readSidecar reads the sidecar of o's object (nil when it has none). The
// listing may have settled that it has none; otherwise S3 is asked. A
// sidecar that cannot be parsed fails the task with code sidecar_invalid:
// its document is not indexed with metadata the tenant did not mean.
func (h *Handler) readSidecar(ctx context.Context, o *object) (*sidecar, error) {
	task := o.task
	if task.SidecarKnown && task.SidecarETag == "" {
		return nil, nil
	}
	key := schema.SidecarKey(task.Key)
	obj, err := h.getObject(ctx, o, key, "")
	if err != nil {
		if creds.Classify(err).Class == schema.ClassNotFound {
			return nil, nil
		}
		return nil, fmt.Errorf("read the sidecar s3://%s/%s: %w", task.Bucket, key, err)
	}
	defer obj.Body.Close()
	data, err := io.ReadAll(io.LimitReader(obj.Body, schema.MaxSidecarBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read the sidecar s3://%s/%s: %w", task.Bucket, key, err)
	}
	sc, err := parseSidecar(data)
	if err != nil {
		return nil, &schema.ClassError{Class: schema.ClassPermanent, Code: schema.CodeSidecarInvalid,
			Hint: "fix or remove the sidecar; the document is indexed once it is", Err: fmt.Errorf("sidecar s3://%s/%s: %w", task.Bucket, key, err)}
	}
	sc.etag = aws.ToString(obj.ETag)
	return sc, nil
}

// getObject is GetObject of key (version, when not "") in o's bucket with
// o's tenant's role.
func (h *Handler) getObject(ctx context.Context, o *object, key, version string) (*s3.GetObjectOutput, error) {
	task := o.task
	req, err := h.cfg.Resolver.Request(o.tenant, scopeOf(task), task.Bucket, task.ScopePrefix)
	if err != nil {
		return nil, err
	}
	in := &s3.GetObjectInput{Bucket: aws.String(task.Bucket), Key: aws.String(key), ExpectedBucketOwner: o.tenant.Owner()}
	if version != "" {
		in.VersionId = aws.String(version)
	}
	return h.cfg.Resolver.GetObject(ctx, o.tenant, req, task.Region, in)
}

// scopeOf is the session scope of task's requests: its job, or "events".
func scopeOf(task *schema.Task) string {
	if task.JobID == "" {
		return "events"
	}
	return task.JobID
}

// parseSidecar reads a sidecar in Bedrock's shape ({"metadataAttributes":
// {...}}) or Kendra's ({"Attributes": {...}}, "_source_uri" the URI to
// cite). Values are strings, numbers, booleans or lists of them, or
// Bedrock's typed form ({"value": {"type": …, "stringValue": …}}); at most
// maxSidecarKeys names of at most MaxMetaNameBytes, strings of at most
// MaxMetaValueBytes.
func parseSidecar(data []byte) (*sidecar, error) {
	if len(data) > schema.MaxSidecarBytes {
		return nil, fmt.Errorf("over %d bytes", schema.MaxSidecarBytes)
	}
	var f struct {
		Bedrock map[string]json.RawMessage `json:"metadataAttributes"`
		Kendra  map[string]json.RawMessage `json:"Attributes"`
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("not a JSON object: %w", err)
	}
	raw := f.Bedrock
	if raw == nil {
		raw = f.Kendra
	}
	if raw == nil {
		return nil, errors.New(`neither "metadataAttributes" (Bedrock) nor "Attributes" (Kendra) is an object`)
	}
	if len(raw) > maxSidecarKeys {
		return nil, fmt.Errorf("%d attributes, over %d", len(raw), maxSidecarKeys)
	}
	sc := &sidecar{attrs: make(map[string]any, len(raw))}
	for _, name := range slices.Sorted(maps.Keys(raw)) {
		if name == "" || len(name) > MaxMetaNameBytes || !utf8.ValidString(name) {
			return nil, fmt.Errorf("attribute name %q: 1 to %d bytes of UTF-8", schema.Prefix(name, MaxMetaNameBytes), MaxMetaNameBytes)
		}
		v, err := attrValue(raw[name])
		if err != nil {
			return nil, fmt.Errorf("attribute %q: %w", name, err)
		}
		if name == sidecarSourceKey {
			s, ok := v.(string)
			if !ok || !strings.Contains(s, "://") {
				return nil, fmt.Errorf("attribute %q: a URI is a string with a scheme", name)
			}
			sc.sourceURI = s
			continue
		}
		sc.attrs[name] = v
	}
	return sc, nil
}

// attrValue is one attribute's value: a scalar, a list of scalars, or
// Bedrock's typed form unwrapped.
func attrValue(raw json.RawMessage) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if m, ok := v.(map[string]any); ok {
		typed, _ := m["value"].(map[string]any)
		v = nil
		for _, field := range []string{"stringValue", "numberValue", "booleanValue", "stringListValue"} {
			if inner, ok := typed[field]; ok {
				v = inner
				break
			}
		}
		if v == nil {
			return nil, errors.New(`an object is allowed only in Bedrock's typed form {"value": {"type": …, "stringValue": …}}`)
		}
	}
	if list, ok := v.([]any); ok {
		if len(list) > maxSidecarList {
			return nil, fmt.Errorf("%d items, over %d", len(list), maxSidecarList)
		}
		for i, item := range list {
			s, err := scalar(item)
			if err != nil {
				return nil, fmt.Errorf("item %d: %w", i, err)
			}
			list[i] = s
		}
		return list, nil
	}
	return scalar(v)
}

func scalar(v any) (any, error) {
	switch s := v.(type) {
	case string:
		if len(s) > MaxMetaValueBytes {
			return nil, fmt.Errorf("a string over %d bytes", MaxMetaValueBytes)
		}
		return s, nil
	case json.Number, bool:
		return s, nil
	case nil:
		return nil, errors.New("null")
	}
	return nil, fmt.Errorf("a %T is not a string, number or boolean", v)
}
