package schema

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

// samePageTask checks that the TaskPage of base encodes o as Encode encodes
// base with o's fields: the same fields with the same values (decoded as a
// Task and as a plain map, so a field written empty instead of left out
// shows), and the same length (only the order of fields differs).
func samePageTask(t *testing.T, base Task, o ListedObject) {
	t.Helper()
	page, err := NewTaskPage(base)
	if err != nil {
		t.Fatal(err)
	}
	got, err := page.Encode(o)
	task := base
	task.Key, task.ETag, task.Size, task.LastModified, task.SidecarKnown, task.SidecarETag = o.Key, o.ETag, o.Size, o.LastModified, o.SidecarKnown, o.SidecarETag
	want, werr := Encode(&task)
	if (err != nil) != (werr != nil) {
		t.Fatalf("%+v: TaskPage error %v, Encode error %v", o, err, werr)
	}
	if err != nil {
		return
	}
	var g, w Task
	var gm, wm map[string]any
	for _, d := range []struct {
		data []byte
		into any
	}{{got, &g}, {want, &w}, {got, &gm}, {want, &wm}} {
		if err := json.Unmarshal(d.data, d.into); err != nil {
			t.Fatalf("%s: %v", d.data, err)
		}
	}
	if !reflect.DeepEqual(g, w) || !reflect.DeepEqual(gm, wm) || len(got) != len(want) {
		t.Fatalf("TaskPage wrote\n%s\nEncode wrote\n%s", got, want)
	}
}

func pageBase() Task {
	return Task{Op: OpIndex, JobID: "job_1", Org: "org_1", Collection: "docs", IntegrationID: "int_1", Bucket: "b", Region: "eu-west-1",
		ScopePrefix: "docs/", SkipExisting: true, Sync: true, ReadSettings: ReadSettings{ChunkTokens: 512, OCRLanguages: "eng+deu"}}
}

func TestTaskPageDecodesAsEncode(t *testing.T) {
	at := time.Date(2026, 12, 7, 10, 11, 12, 345_000_000, time.UTC)
	far := time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) // MarshalJSON refuses it: both fail
	zoned := at.In(time.FixedZone("odd", 3600+30))
	noon := time.Date(2026, 1, 2, 12, 0, 0, 0, time.UTC) // no fraction
	bare := Task{Op: OpIndex, Org: "org_1", Collection: "docs", IntegrationID: "int_1", Bucket: "b", Region: "us-east-1"}
	withMeta := pageBase()
	withMeta.CustomMetadata = json.RawMessage(`{"team": "a<b>&c"}`)
	withMeta.ETag, withMeta.Key = `"ignored"`, "ignored" // the listing's fields replace the base's
	for _, base := range []Task{pageBase(), bare, withMeta} {
		for _, o := range []ListedObject{
			{Key: "docs/a.txt", ETag: `"0123456789abcdef0123456789abcdef"`, Size: 42, LastModified: &at},
			{Key: "docs/a.txt"},
			{Key: ""},
			{Key: `docs/quote"back\slash<tag>&amp;.txt`, ETag: `"x"`, SidecarKnown: true, SidecarETag: `"s"`},
			{Key: "docs/ctrl\x01\n\t\u2028.txt", SidecarKnown: true},
			{Key: "docs/日本語 ✓.pdf", Size: -1},
			{Key: "docs/bad\xffutf8.txt", ETag: "\xfe"},
			{Key: "docs/" + strings.Repeat("k", 1024), LastModified: &far},
			{Key: "docs/zoned.txt", LastModified: &zoned},
			{Key: "docs/noon.txt", LastModified: &noon, ETag: `"a\\b"`},
			{Key: "docs/\x00page-key\x00"},
		} {
			samePageTask(t, base, o)
		}
	}
	base := pageBase()
	base.Collection = keySentinel
	if _, err := NewTaskPage(base); err == nil {
		t.Fatal("a shared field holding the placeholder was not refused")
	}
	huge := ListedObject{Key: strings.Repeat("k", MaxMessageBytes)}
	if _, err := (&TaskPage{}).Encode(huge); err == nil {
		t.Fatal("a task past MaxMessageBytes was encoded")
	}
}

func FuzzTaskPage(f *testing.F) {
	f.Add("docs/a.txt", `"etag"`, int64(1), int64(1733500000), true, "", "docs/")
	f.Add("docs/\x00x<&>\"\\", "", int64(0), int64(0), false, `"s"`, "")
	f.Fuzz(func(t *testing.T, key, etag string, size, unix int64, known bool, sidecar, prefix string) {
		base := pageBase()
		base.ScopePrefix = prefix
		if _, err := NewTaskPage(base); err != nil {
			return // the prefix holds the placeholder
		}
		o := ListedObject{Key: key, ETag: etag, Size: size, SidecarKnown: known, SidecarETag: sidecar}
		if unix != 0 {
			at := time.Unix(unix, unix%1_000_000_000).UTC()
			if unix%2 == 0 {
				at = at.In(time.FixedZone("z", int(unix%50_000)))
			}
			o.LastModified = &at
		}
		samePageTask(t, base, o)
	})
}

// BenchmarkTaskPage: a listing's task as the planner encodes it, against
// Encode of the whole Task.
func BenchmarkTaskPage(b *testing.B) {
	at := time.Date(2026, 12, 7, 10, 11, 12, 0, time.UTC)
	o := ListedObject{Key: "big/obj-0001234.txt", ETag: `"0123456789abcdef0123456789abcdef"`, Size: 4096, LastModified: &at, SidecarKnown: true}
	b.Run("TaskPage", func(b *testing.B) {
		page, err := NewTaskPage(pageBase())
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := page.Encode(o); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Encode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			task := pageBase()
			task.Key, task.ETag, task.Size, task.LastModified, task.SidecarKnown = o.Key, o.ETag, o.Size, o.LastModified, o.SidecarKnown
			if _, err := Encode(&task); err != nil {
				b.Fatal(err)
			}
		}
	})
}
