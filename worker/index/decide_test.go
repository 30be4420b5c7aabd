package index

import (
	"testing"
	"time"

	"github.com/stevedore-dev/stevedore/schema"
)

// TestDecide: what a task's stored object state decides before any work,
// the task's ETag (etag: the listing's or the notification's) standing for
// the object; and, when it says proceed, what S3 returning another ETag
// (fetched) turns it into.
func TestDecide(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	t1 := t0.Add(time.Hour)
	indexed := func(mod func(*schema.ObjectState)) *schema.ObjectState {
		s := &schema.ObjectState{ETag: `"e1"`, Status: schema.ObjectIndexed, JobID: "job_a", Sequencer: "0A", LastModified: &t0, CustomHash: "c1"}
		if mod != nil {
			mod(s)
		}
		return s
	}
	job := func(mod func(*schema.Task)) *schema.Task {
		t := &schema.Task{Op: schema.OpIndex, JobID: "job_b", SkipExisting: true, LastModified: &t0, SidecarKnown: true}
		if mod != nil {
			mod(t)
		}
		return t
	}
	tests := []struct {
		name  string
		task  *schema.Task
		state *schema.ObjectState
		etag  string
		want  course
	}{
		{"no state", job(nil), nil, `"e1"`, proceed},
		{"older sequencer", job(func(t *schema.Task) { t.JobID, t.Sequencer = "", "09" }), indexed(nil), "", stale},
		{"older sequencer, shorter", job(func(t *schema.Task) { t.JobID, t.Sequencer = "", "9" }), indexed(func(s *schema.ObjectState) { s.Sequencer = "000A" }), "", stale},
		{"older delete", job(func(t *schema.Task) { t.Op, t.JobID, t.Sequencer = schema.OpDelete, "", "01" }), indexed(nil), "", stale},
		{"newer delete", job(func(t *schema.Task) { t.Op, t.JobID, t.Sequencer = schema.OpDelete, "", "0B" }), indexed(nil), "", proceed},
		{"job task without sequencer is never stale", job(nil), indexed(nil), `"e2"`, proceed},
		{"same job saved it", job(func(t *schema.Task) { t.JobID = "job_a" }), indexed(nil), `"e1"`, alreadySaved},
		{"same job, etag unknown yet", job(func(t *schema.Task) { t.JobID = "job_a" }), indexed(nil), "", alreadySaved},
		{"same job, object changed since", job(func(t *schema.Task) { t.JobID, t.SkipExisting = "job_a", false }), indexed(nil), `"e2"`, proceed},
		{"same notification saved it", job(func(t *schema.Task) { t.JobID, t.Sequencer = "", "0A" }), indexed(nil), `"e1"`, alreadySaved},
		{"skip_existing, same etag", job(nil), indexed(nil), `"e1"`, unchanged},
		{"skip_existing, same etag, new time (a copy in place)", job(func(t *schema.Task) { t.LastModified = &t1 }), indexed(nil), `"e1"`, refresh},
		{"skip_existing, same etag, no time listed", job(func(t *schema.Task) { t.LastModified = nil }), indexed(nil), `"e1"`, refresh},
		{"skip_existing, same etag, a sidecar appeared", job(func(t *schema.Task) { t.SidecarETag = `"s1"` }), indexed(nil), `"e1"`, refresh},
		{"skip_existing, same etag, sidecar changed", job(func(t *schema.Task) { t.SidecarETag = `"s2"` }), indexed(func(s *schema.ObjectState) { s.SidecarETag = `"s1"` }), `"e1"`, refresh},
		{"skip_existing, same etag, same sidecar", job(func(t *schema.Task) { t.SidecarETag = `"s1"` }), indexed(func(s *schema.ObjectState) { s.SidecarETag = "s1" }), `"e1"`, unchanged},
		{"skip_existing, same etag, sidecar not settled by the listing", job(func(t *schema.Task) { t.SidecarKnown = false }), indexed(nil), `"e1"`, refresh},
		{"skip_existing, same etag, tags asked for", job(func(t *schema.Task) { t.ObjectTags = true }), indexed(nil), `"e1"`, refresh},
		{"skip_existing, same etag, other custom metadata", job(nil), indexed(func(s *schema.ObjectState) { s.CustomHash = "c0" }), `"e1"`, refresh},
		{"a sidecar's change", job(func(t *schema.Task) { t.ViaSidecar = "sidecar:0C" }), indexed(nil), "", refresh},
		{"a sidecar's change, no document indexed", job(func(t *schema.Task) { t.ViaSidecar = "sidecar:0C" }), nil, "", proceed},
		{"skip_existing, skipped before, new time", job(func(t *schema.Task) { t.LastModified = &t1 }), indexed(func(s *schema.ObjectState) { s.Status = schema.ObjectSkipped }), `"e1"`, unchanged},
		{"skip_existing, skipped before", job(nil), indexed(func(s *schema.ObjectState) { s.Status = schema.ObjectSkipped }), `"e1"`, unchanged},
		{"skip_existing, etag unknown", job(nil), indexed(nil), "", proceed},
		{"skip_existing, changed", job(nil), indexed(nil), `"e2"`, proceed},
		{"overwrite_existing", job(func(t *schema.Task) { t.OverwriteExisting = true }), indexed(nil), `"e1"`, proceed},
		{"no skip_existing", job(func(t *schema.Task) { t.SkipExisting = false }), indexed(nil), `"e1"`, proceed},
		{"deleted, re-uploaded with the same content", job(nil), indexed(func(s *schema.ObjectState) { s.Status = schema.ObjectDeleted }), `"e1"`, proceed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.task.ETag = tt.etag
			if got := decide(tt.task, tt.state, "c1").now; got != tt.want {
				t.Fatalf("decide = %d, want %d", got, tt.want)
			}
		})
	}
}

// TestDecideOnFetch: a task that proceeds is settled by its stored state
// when S3 returns the ETag that state covers: the same job's saved outcome
// again, or skip_existing's unchanged; any other ETag is indexed.
func TestDecideOnFetch(t *testing.T) {
	state := &schema.ObjectState{ETag: `"e1"`, Status: schema.ObjectIndexed, JobID: "job_a"}
	tests := []struct {
		name    string
		task    *schema.Task
		fetched string
		want    course
	}{
		{"same job, listing had another etag, S3 has the saved one", &schema.Task{JobID: "job_a", ETag: `"e0"`}, `"e1"`, alreadySaved},
		{"same job, S3 has a newer one", &schema.Task{JobID: "job_a", ETag: `"e0"`}, `"e2"`, proceed},
		{"skip_existing, etag unknown, S3 has the stored one", &schema.Task{JobID: "job_b", SkipExisting: true}, `"e1"`, unchanged},
		{"skip_existing, etag unknown, S3 has a newer one", &schema.Task{JobID: "job_b", SkipExisting: true}, `"e2"`, proceed},
		{"no skip_existing", &schema.Task{JobID: "job_b"}, `"e1"`, proceed},
		{"advanced does not stand in for basic", &schema.Task{JobID: "job_b", SkipExisting: true, ReadSettings: schema.ReadSettings{ProcessingType: schema.ProcessingAdvanced}}, `"e1"`, proceed},
	}
	for _, tt := range tests {
		d := decide(tt.task, state, "")
		if d.now != proceed {
			t.Fatalf("%s: decide = %d before the fetch, want proceed", tt.name, d.now)
		}
		if got := d.onFetch(tt.fetched); got != tt.want {
			t.Errorf("%s: onFetch = %d, want %d", tt.name, got, tt.want)
		}
	}
}

func TestSequencerOnlyMovesForward(t *testing.T) {
	st := &schema.ObjectState{Sequencer: "0A"}
	tests := []struct {
		name                 string
		task                 *schema.Task
		state                *schema.ObjectState
		confirmed, overrides bool
		want                 string
	}{
		{"a job task keeps the stored one", &schema.Task{JobID: "job_a"}, st, true, false, "0A"},
		{"a newer confirmed event", &schema.Task{Sequencer: "0B"}, st, true, false, "0B"},
		{"a newer event S3 did not confirm", &schema.Task{Sequencer: "FFFF"}, st, false, false, "0A"},
		{"an older confirmed event", &schema.Task{Sequencer: "09"}, st, true, false, "0A"},
		{"an older event S3 showed to be newer", &schema.Task{Sequencer: "09"}, st, true, true, "09"},
		{"no state, no sequencer", &schema.Task{}, nil, true, false, ""},
	}
	for _, tt := range tests {
		if got := sequencer(tt.task, tt.state, tt.confirmed, tt.overrides); got != tt.want {
			t.Errorf("%s: %q, want %q", tt.name, got, tt.want)
		}
	}
}
