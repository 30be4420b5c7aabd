package index

import (
	"encoding/json"
	"maps"
	"mime"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/stevedore-dev/stevedore/schema"
)

// Bounds of the S3 user metadata a chunk carries (tenant input; S3 itself
// allows 2 KB of it per object).
const (
	MaxMetaKeys       = 32
	MaxMetaNameBytes  = 64
	MaxMetaValueBytes = 1024
)

// source is what S3 answered for the version being indexed.
func source(task *schema.Task, obj *s3.GetObjectOutput) *schema.Source {
	return &schema.Source{URI: "s3://" + task.Bucket + "/" + task.Key, VersionID: aws.ToString(obj.VersionId), ETag: aws.ToString(obj.ETag),
		LastModified: utc(obj.LastModified), Size: aws.ToInt64(obj.ContentLength), ContentType: aws.ToString(obj.ContentType)}
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
// the job's custom metadata (a JSON object), then the object's own
// (userMetadata). nil when both are empty.
func documentMetadata(custom json.RawMessage, own map[string]string) (json.RawMessage, error) {
	if len(own) == 0 {
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
	return json.Marshal(merged)
}
