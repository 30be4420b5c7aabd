// Package notify parses the bodies of SQS messages that carry S3 event
// notifications, in every shape S3 delivers them: plain S3 notifications
// (Records[], event version 2.x), the same wrapped by SNS (a Notification
// whose Message is the S3 JSON as a string; raw delivery is the plain shape),
// EventBridge "Object Created" / "Object Deleted" events, and s3:TestEvent.
//
// Keys of S3 and SNS notifications are URL-encoded the way S3 encodes them
// ("+" is a space, %XX escapes) and are decoded here. EventBridge events carry
// the key as is. Unknown fields are ignored; an unknown shape, invalid JSON or
// a record that cannot be understood is an error with a reason.
package notify

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/stevedore-dev/stevedore/schema"
)

// Kind says what a record asks for.
type Kind string

// Record kinds.
const (
	Create  Kind = "create"  // index the object version
	Delete  Kind = "delete"  // delete or delete marker: tombstone the chunks
	Ignored Kind = "ignored" // an event type that changes nothing indexed (ACL, tagging, restore …)
)

// Record is one object event, whatever shape it came in.
type Record struct {
	Kind      Kind
	EventName string // e.g. "ObjectCreated:Put", "Object Deleted"
	Source    string // "s3", "sns", "eventbridge"
	Region    string
	Bucket    string
	Key       string // decoded
	VersionID string
	ETag      string
	Size      int64
	Sequencer string
	// SequencerIgnored: the record's sequencer was not hexadecimal (seen
	// in published samples) and was dropped; the record is still used,
	// since the worker confirms every claim against S3.
	SequencerIgnored bool
	EventTime        time.Time
	// Err is set when this record (and only it) cannot be used; the
	// message's other records still are.
	Err error
}

// Message is what one SQS message body holds.
type Message struct {
	Test    bool // s3:TestEvent: acknowledge and delete
	Records []Record
}

// ErrInvalid wraps every error about a body as a whole.
var ErrInvalid = errors.New("invalid notification")

// MaxBody is the largest body Parse accepts (SQS allows 256 KiB; SNS
// wrapping can only make it smaller).
const MaxBody = 256 << 10

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// Parse decodes one SQS message body.
func Parse(body []byte) (*Message, error) {
	return parse(body, 0, "s3")
}

type probe struct {
	Records    json.RawMessage `json:"Records"`
	Event      string          `json:"Event"`
	Type       string          `json:"Type"`
	Message    *string         `json:"Message"`
	DetailType string          `json:"detail-type"`
	Source     string          `json:"source"`
	Detail     json.RawMessage `json:"detail"`
}

func parse(body []byte, depth int, source string) (*Message, error) {
	if len(body) > MaxBody {
		return nil, invalid("body is %d bytes, over %d", len(body), MaxBody)
	}
	body = bytes.TrimSpace(body)
	if len(body) == 0 || body[0] != '{' {
		return nil, invalid("body is not a JSON object")
	}
	var p probe
	if err := json.Unmarshal(body, &p); err != nil {
		return nil, invalid("body is not valid JSON: %v", err)
	}
	switch {
	case p.Event == "s3:TestEvent":
		return &Message{Test: true}, nil
	case p.Type == "Notification" && p.Message != nil:
		if depth > 0 {
			return nil, invalid("SNS notification nested in another")
		}
		m, err := parse([]byte(*p.Message), depth+1, "sns")
		if err != nil {
			return nil, fmt.Errorf("SNS Message: %w", err)
		}
		return m, nil
	case p.Records != nil:
		return parseS3(p.Records, source)
	case p.Source == "aws.s3" && p.Detail != nil:
		return parseEventBridge(body, p.DetailType)
	}
	return nil, invalid("unknown shape: not an S3 notification (Records), SNS Notification, EventBridge aws.s3 event or s3:TestEvent")
}

type s3Record struct {
	EventVersion string `json:"eventVersion"`
	EventSource  string `json:"eventSource"`
	AWSRegion    string `json:"awsRegion"`
	EventTime    string `json:"eventTime"`
	EventName    string `json:"eventName"`
	S3           *struct {
		Bucket struct {
			Name string `json:"name"`
		} `json:"bucket"`
		Object struct {
			Key       string `json:"key"`
			Size      int64  `json:"size"`
			ETag      string `json:"eTag"`
			VersionID string `json:"versionId"`
			Sequencer string `json:"sequencer"`
		} `json:"object"`
	} `json:"s3"`
}

func parseS3(raw json.RawMessage, source string) (*Message, error) {
	var recs []json.RawMessage
	if err := json.Unmarshal(raw, &recs); err != nil {
		return nil, invalid("Records is not an array: %v", err)
	}
	if len(recs) == 0 {
		return nil, invalid("Records is empty")
	}
	m := &Message{}
	for i, rr := range recs {
		var r s3Record
		rec := Record{Source: source}
		if err := json.Unmarshal(rr, &r); err != nil {
			rec.Err = fmt.Errorf("record %d: %v", i, err)
			m.Records = append(m.Records, rec)
			continue
		}
		rec.EventName, rec.Region = strings.TrimPrefix(r.EventName, "s3:"), r.AWSRegion
		rec.Err = func() error {
			if major, _, _ := strings.Cut(r.EventVersion, "."); major != "2" {
				return fmt.Errorf("record %d: eventVersion %q: only 2.x is understood", i, r.EventVersion)
			}
			if r.S3 == nil || r.S3.Bucket.Name == "" || r.S3.Object.Key == "" {
				return fmt.Errorf("record %d: s3.bucket.name and s3.object.key are required", i)
			}
			key, err := url.QueryUnescape(r.S3.Object.Key)
			if err != nil {
				return fmt.Errorf("record %d: key is not URL-encoded as S3 encodes it: %v", i, err)
			}
			rec.Bucket, rec.Key = r.S3.Bucket.Name, key
			rec.VersionID, rec.ETag, rec.Size, rec.Sequencer = r.S3.Object.VersionID, r.S3.Object.ETag, r.S3.Object.Size, r.S3.Object.Sequencer
			if err := checkClaims(&rec); err != nil {
				return fmt.Errorf("record %d: %w", i, err)
			}
			if t, err := time.Parse(time.RFC3339Nano, r.EventTime); err == nil {
				rec.EventTime = t
			}
			rec.Kind = kindOf(rec.EventName)
			return nil
		}()
		m.Records = append(m.Records, rec)
	}
	return m, nil
}

// MaxSequencerLen bounds an S3 sequencer: S3's are hex strings of 16–20
// digits; a longer one is a forgery meant to win every later comparison.
const MaxSequencerLen = 32

// checkClaims refuses record fields stevedore acts on that S3 would never
// send: a sequencer made to win every comparison, a region name that would
// make the SDK dial a host of the sender's choosing. A short sequencer that
// is not hexadecimal cannot be compared: it is dropped (SequencerIgnored)
// and the record is used without it.
func checkClaims(rec *Record) error {
	if rec.Region != "" && !schema.ValidRegion(rec.Region) {
		return fmt.Errorf("awsRegion %s is not an AWS region name", schema.Quote(rec.Region))
	}
	if len(rec.Sequencer) > MaxSequencerLen {
		return fmt.Errorf("sequencer of %d characters: S3's are at most %d hex digits", len(rec.Sequencer), MaxSequencerLen)
	}
	if !hex(rec.Sequencer) {
		rec.Sequencer, rec.SequencerIgnored = "", true
	}
	return nil
}

// hex reports whether s is hexadecimal digits only.
func hex(s string) bool {
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// kindOf maps an S3 event name to what it means for the index.
func kindOf(name string) Kind {
	switch {
	case strings.HasPrefix(name, "ObjectCreated:"):
		return Create
	case strings.HasPrefix(name, "ObjectRemoved:"), name == "LifecycleExpiration:Delete", name == "LifecycleExpiration:DeleteMarkerCreated":
		return Delete
	}
	return Ignored // restore, replication, transitions, tagging, ACL, RRS lost …
}

type ebEvent struct {
	Time   string `json:"time"`
	Region string `json:"region"`
	Detail struct {
		Version string `json:"version"`
		Bucket  struct {
			Name string `json:"name"`
		} `json:"bucket"`
		Object struct {
			Key       string `json:"key"`
			Size      int64  `json:"size"`
			ETag      string `json:"etag"`
			VersionID string `json:"version-id"`
			Sequencer string `json:"sequencer"`
		} `json:"object"`
		Reason       string `json:"reason"`
		DeletionType string `json:"deletion-type"`
	} `json:"detail"`
}

func parseEventBridge(body []byte, detailType string) (*Message, error) {
	var e ebEvent
	if err := json.Unmarshal(body, &e); err != nil {
		return nil, invalid("EventBridge event: %v", err)
	}
	rec := Record{Source: "eventbridge", EventName: detailType, Region: e.Region, Bucket: e.Detail.Bucket.Name, Key: e.Detail.Object.Key,
		VersionID: e.Detail.Object.VersionID, ETag: e.Detail.Object.ETag, Size: e.Detail.Object.Size, Sequencer: e.Detail.Object.Sequencer}
	if t, err := time.Parse(time.RFC3339Nano, e.Time); err == nil {
		rec.EventTime = t
	}
	switch detailType {
	case "Object Created":
		rec.Kind = Create
	case "Object Deleted":
		rec.Kind = Delete
	default:
		rec.Kind = Ignored // Object Restore …, Object Tags Added, Object Storage Class Changed …
	}
	if rec.Kind != Ignored && (rec.Bucket == "" || rec.Key == "") {
		rec.Err = errors.New("EventBridge event: detail.bucket.name and detail.object.key are required")
	}
	if err := checkClaims(&rec); rec.Err == nil && err != nil {
		rec.Err = fmt.Errorf("EventBridge event: %w", err)
	}
	return &Message{Records: []Record{rec}}, nil
}
