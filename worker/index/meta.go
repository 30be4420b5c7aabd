package index

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"maps"
	"mime"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/worker/creds"
)

// Bounds of the S3 user metadata a chunk carries (tenant input; S3 itself
// allows 2 KB of it per object).
const (
	MaxMetaKeys       = 32
	MaxMetaNameBytes  = 64
	MaxMetaValueBytes = 1024
)

// header is what S3 answered of the version being indexed (GET or HEAD).
type header struct {
	etag, version string
	size          int64
	lastModified  *time.Time
	contentType   string
	userMeta      map[string]string // normalised (userMetadata)
}

func getHeader(obj *s3.GetObjectOutput) header {
	return header{etag: aws.ToString(obj.ETag), version: aws.ToString(obj.VersionId), size: aws.ToInt64(obj.ContentLength),
		lastModified: utc(obj.LastModified), contentType: aws.ToString(obj.ContentType), userMeta: userMetadata(obj.Metadata)}
}

func headHeader(out *s3.HeadObjectOutput) header {
	return header{etag: aws.ToString(out.ETag), version: aws.ToString(out.VersionId), size: aws.ToInt64(out.ContentLength),
		lastModified: utc(out.LastModified), contentType: aws.ToString(out.ContentType), userMeta: userMetadata(out.Metadata)}
}

// described is what a version's chunks carry besides their text, and
// its fingerprints (schema.ObjectState.MetaHash, CustomHash).
type described struct {
	source      *schema.Source
	custom      json.RawMessage // the job's or collection's custom metadata
	meta        json.RawMessage // the document's metadata (documentMetadata)
	sidecarETag string
	hash        string
	customHash  string
}

// describe reads what o's version carries besides its text: its custom
// metadata (read with the task), its sidecar, its tags when asked for, with
// what S3 answered (hdr). Kendra's _source_uri replaces the s3:// URI.
func (h *Handler) describe(ctx context.Context, o *object, hdr header) (*described, error) {
	task, custom := o.task, o.custom
	sc, err := h.readSidecar(ctx, o)
	if err != nil {
		return nil, err
	}
	tags, err := h.objectTags(ctx, o, hdr.version)
	if err != nil {
		return nil, err
	}
	d := &described{custom: custom, customHash: fingerprint(custom),
		source: &schema.Source{URI: "s3://" + task.Bucket + "/" + task.Key, VersionID: hdr.version, ETag: hdr.etag, LastModified: hdr.lastModified,
			Size: hdr.size, ContentType: hdr.contentType}}
	var attrs map[string]any
	if sc != nil {
		d.sidecarETag, attrs = sc.etag, sc.attrs
		if sc.sourceURI != "" {
			d.source.URI = sc.sourceURI
		}
	}
	if d.meta, err = documentMetadata(custom, hdr.userMeta, tags, attrs); err != nil {
		return nil, err
	}
	all, err := json.Marshal([]any{d.source, d.custom, d.meta})
	if err != nil {
		return nil, err
	}
	d.hash = fingerprint(all)
	return d, nil
}

// fingerprint is a short hash of b ("" for none).
func fingerprint(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:16])
}

func utc(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

// userMetadata is an object's S3 user metadata as a chunk carries it:
// names lowercased with what is not [a-z0-9_] made "_" (at most
// MaxMetaNameBytes), values decoded from RFC 2047 when S3 holds them so,
// valid UTF-8, at most MaxMetaValueBytes; at most MaxMetaKeys names, the
// first in name order.
func userMetadata(meta map[string]string) map[string]string {
	if len(meta) == 0 {
		return nil
	}
	out := make(map[string]string, min(len(meta), MaxMetaKeys))
	var dec mime.WordDecoder
	for _, name := range slices.Sorted(maps.Keys(meta)) {
		if len(out) == MaxMetaKeys {
			break
		}
		v := meta[name]
		if d, err := dec.DecodeHeader(v); err == nil {
			v = d
		}
		out[metaName(name)] = schema.Prefix(strings.ToValidUTF8(v, "\uFFFD"), MaxMetaValueBytes)
	}
	return out
}

func metaName(name string) string {
	b := []byte(strings.ToLower(name))
	for i, c := range b {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '_' {
			b[i] = '_'
		}
	}
	return schema.Prefix(string(b), MaxMetaNameBytes)
}

// documentMetadata merges what a chunk's metadata holds, later winning:
// the job's custom metadata (a JSON object), the object's S3 user metadata
// (userMetadata), its tags, its sidecar's attributes — the most specific
// and deliberate last. nil when all are empty.
func documentMetadata(custom json.RawMessage, own, tags map[string]string, attrs map[string]any) (json.RawMessage, error) {
	if len(own) == 0 && len(tags) == 0 && len(attrs) == 0 {
		if len(custom) == 0 {
			return nil, nil
		}
		return custom, nil
	}
	merged := map[string]any{}
	if len(custom) > 0 {
		if err := json.Unmarshal(custom, &merged); err != nil {
			return nil, schema.Errorf(schema.ClassPermanent, "custom metadata is not a JSON object: %w", err)
		}
	}
	for k, v := range own {
		merged[k] = v
	}
	for k, v := range tags {
		merged[k] = v
	}
	for k, v := range attrs {
		merged[k] = v
	}
	return json.Marshal(merged)
}

// objectTags are the S3 tags of o's object at version (nil unless the
// task asks for them), names normalised and values bounded like user
// metadata. A role that may not read them fails the task with code
// tags_denied: the tenant asked for tags, and is told what to grant.
func (h *Handler) objectTags(ctx context.Context, o *object, version string) (map[string]string, error) {
	task := o.task
	if !task.ObjectTags {
		return nil, nil
	}
	req, err := h.cfg.Resolver.Request(o.tenant, scopeOf(task), task.Bucket, task.ScopePrefix)
	if err != nil {
		return nil, err
	}
	var out *s3.GetObjectTaggingOutput
	err = h.cfg.Resolver.WithS3(ctx, o.tenant, req, task.Region, func(c *s3.Client) error {
		in := &s3.GetObjectTaggingInput{Bucket: aws.String(task.Bucket), Key: aws.String(task.Key), ExpectedBucketOwner: o.tenant.Owner()}
		if version != "" {
			in.VersionId = aws.String(version)
		}
		var err error
		out, err = c.GetObjectTagging(ctx, in)
		h.m.S3("tagging", err)
		return err
	})
	if err != nil {
		if creds.Classify(err).Class == schema.ClassTenantPermission {
			return nil, &schema.ClassError{Class: schema.ClassTenantPermission, Code: schema.CodeTagsDenied,
				Hint: "grant the role s3:GetObjectTagging and s3:GetObjectVersionTagging on the objects, or index without include_object_tags", Err: err}
		}
		return nil, err
	}
	tags := make(map[string]string, len(out.TagSet))
	for _, t := range out.TagSet {
		tags[aws.ToString(t.Key)] = aws.ToString(t.Value)
	}
	return userMetadata(tags), nil
}
