package notify

import (
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// golden is the stable, comparable form of a parse result.
type golden struct {
	Test    bool             `json:"test,omitempty"`
	Records []map[string]any `json:"records,omitempty"`
	Error   string           `json:"error,omitempty"`
}

func render(m *Message, err error) golden {
	if err != nil {
		return golden{Error: err.Error()}
	}
	g := golden{Test: m.Test}
	for _, r := range m.Records {
		rec := map[string]any{"kind": r.Kind, "event": r.EventName, "source": r.Source, "bucket": r.Bucket, "key": r.Key,
			"version_id": r.VersionID, "etag": r.ETag, "size": r.Size, "sequencer": r.Sequencer, "region": r.Region}
		if !r.EventTime.IsZero() {
			rec["event_time"] = r.EventTime
		}
		if r.Err != nil {
			rec = map[string]any{"error": r.Err.Error()}
		}
		g.Records = append(g.Records, rec)
	}
	return g
}

// TestGolden parses every documented shape in testdata (written from AWS's
// documentation of S3 notifications, SNS envelopes and EventBridge events)
// and compares with the golden result.
func TestGolden(t *testing.T) {
	inputs, _ := filepath.Glob("testdata/*.json")
	if len(inputs) < 10 {
		t.Fatalf("only %d inputs", len(inputs))
	}
	for _, in := range inputs {
		t.Run(filepath.Base(in), func(t *testing.T) {
			body, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := json.MarshalIndent(render(Parse(body)), "", "  ")
			path := strings.TrimSuffix(in, ".json") + ".golden"
			if *update {
				if err := os.WriteFile(path, append(got, '\n'), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./producer/notify -update)", err)
			}
			if strings.TrimSpace(string(want)) != strings.TrimSpace(string(got)) {
				t.Fatalf("got\n%s\nwant\n%s", got, want)
			}
		})
	}
}

func TestShapes(t *testing.T) {
	read := func(name string) []byte {
		b, err := os.ReadFile("testdata/" + name)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	tests := []struct {
		file    string
		test    bool
		kinds   string
		key     string
		invalid bool
	}{
		{"s3_put.json", false, "create", "reports/Q3 plan (2026) c++.txt", false},
		{"sns_wrapped.json", false, "create", "reports/Q3 plan (2026) c++.txt", false},
		{"s3_multi.json", false, "create delete delete ignored error error delete", "a/b=c&d.md", false},
		{"eventbridge_created.json", false, "create", "eb/raw key+plus.txt", false},
		{"eventbridge_deleted.json", false, "delete", "eb/raw key+plus.txt", false},
		{"eventbridge_restore.json", false, "ignored", "eb/raw key+plus.txt", false},
		{"testevent.json", true, "", "", false},
		{"sns_testevent.json", true, "", "", false},
		{"invalid_unknown_shape.json", false, "", "", true},
		{"invalid_truncated.json", false, "", "", true},
		{"invalid_records_type.json", false, "", "", true},
		{"invalid_sns_message.json", false, "", "", true},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			m, err := Parse(read(tc.file))
			if tc.invalid {
				if !errors.Is(err, ErrInvalid) {
					t.Fatalf("want ErrInvalid, got %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var kinds []string
			for _, r := range m.Records {
				if r.Err != nil {
					kinds = append(kinds, "error")
				} else {
					kinds = append(kinds, string(r.Kind))
				}
			}
			if m.Test != tc.test || strings.Join(kinds, " ") != tc.kinds || (tc.key != "" && m.Records[0].Key != tc.key) {
				t.Fatalf("got test=%v kinds=%q key=%q", m.Test, strings.Join(kinds, " "), m.Records[0].Key)
			}
		})
	}
	if _, err := Parse([]byte(strings.Repeat(" ", MaxBody+1))); !errors.Is(err, ErrInvalid) {
		t.Fatal("oversize body accepted")
	}
}

func FuzzParse(f *testing.F) {
	inputs, _ := filepath.Glob("testdata/*.json")
	for _, in := range inputs {
		b, _ := os.ReadFile(in)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		m, err := Parse(body)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error without ErrInvalid: %v", err)
			}
			return
		}
		for _, r := range m.Records {
			if r.Err == nil && r.Kind != Ignored && (r.Bucket == "" || r.Key == "") {
				t.Fatalf("usable record without bucket or key: %+v", r)
			}
		}
	})
}

// TestClaimsS3WouldNeverSend: a record whose sequencer or region S3 would
// never send is unusable (it goes to DEAD), not acted on; a short sequencer
// that is not hexadecimal (seen in published samples) is dropped and the
// record used, since the worker confirms it against S3.
func TestClaimsS3WouldNeverSend(t *testing.T) {
	record := func(region, sequencer string) string {
		return `{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","awsRegion":"` + region + `","eventName":"ObjectRemoved:Delete",` +
			`"s3":{"bucket":{"name":"acme-docs"},"object":{"key":"a.txt","sequencer":"` + sequencer + `"}}}]}`
	}
	for _, tc := range []struct{ name, body, want string }{
		{"fine", record("eu-west-1", "0055AED6DCD90281E5"), ""},
		{"forged sequencer", record("eu-west-1", strings.Repeat("F", 60)), "sequencer of 60 characters"},
		{"not hex: used without its sequencer", record("eu-west-1", "00ZZ"), ""},
		{"region naming a host", record("zz-nowhere-9.evil.example", "01"), "not an AWS region name"},
		{"EventBridge", `{"detail-type":"Object Deleted","source":"aws.s3","region":"127.0.0.1:9","detail":{"bucket":{"name":"b"},"object":{"key":"k"}}}`, "not an AWS region name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Parse([]byte(tc.body))
			if err != nil || len(m.Records) != 1 {
				t.Fatalf("%v %+v", err, m)
			}
			got := ""
			if m.Records[0].Err != nil {
				got = m.Records[0].Err.Error()
			}
			if tc.want == "" && got != "" || !strings.Contains(got, tc.want) {
				t.Fatalf("error %q, want %q", got, tc.want)
			}
			if r := m.Records[0]; r.SequencerIgnored != (r.Err == nil && strings.Contains(tc.body, "00ZZ")) || (r.SequencerIgnored && r.Sequencer != "") {
				t.Fatalf("sequencer %q ignored %v", r.Sequencer, r.SequencerIgnored)
			}
		})
	}
}
