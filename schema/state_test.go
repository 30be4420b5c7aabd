package schema

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestJobStatusTellsTheTruth: a job with failed files never looks like a
// clean success, and one where nothing could be read fails with the cause.
func TestJobStatusTellsTheTruth(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	fold := func(outcomes ...Outcome) *JobStatus {
		s := NewJobStatus(&Job{JobID: "job_1", Org: "org_1", Collection: "docs", CreatedAt: now})
		seq := uint64(1)
		s.Apply(seq, &JobEvent{Type: JobPlanned, Page: 0, Tasks: len(outcomes), Last: true}, now)
		for i, o := range outcomes {
			seq++
			ev := &ObjectEvent{Key: fmt.Sprintf("k%d", i), Outcome: o}
			if o == OutcomeFailed {
				ev.Reason, ev.ErrorClass, ev.ErrorCode = "GetObject: AccessDenied: Access Denied", "tenant_permission", CodeAccessDenied
			}
			s.Apply(seq, ev, now.Add(time.Duration(seq)*time.Second))
		}
		return s
	}
	if s := fold(OutcomeIndexed, OutcomeSkipped); s.Status != JobStatusCompleted || s.Error != nil {
		t.Fatalf("clean job: %+v", s)
	}
	if s := fold(OutcomeIndexed, OutcomeFailed); s.Status != JobStatusCompletedWithErrors || s.Error != nil {
		t.Fatalf("job with a failure: %+v", s)
	}
	s := fold(OutcomeFailed, OutcomeFailed)
	if s.Status != JobStatusFailed || s.Error == nil || s.Error.ErrorCode != CodeAccessDenied || !strings.Contains(s.Error.Reason, "no object could be read") {
		t.Fatalf("job where every file failed: %+v %+v", s, s.Error)
	}
	if v := s.View(now); v.Progress != 1 || v.EstimatedTimeRemainingSeconds == nil || *v.EstimatedTimeRemainingSeconds != 0 {
		t.Fatalf("final view %+v", v)
	}
	// Half done after 10 s: 10 s to go.
	run := NewJobStatus(&Job{JobID: "job_2", Org: "org_1", Collection: "docs", CreatedAt: now})
	run.Apply(1, &JobEvent{Type: JobPlanned, Tasks: 4, Last: true}, now)
	run.Apply(2, &ObjectEvent{Key: "a", Outcome: OutcomeIndexed}, now.Add(5*time.Second))
	run.Apply(3, &ObjectEvent{Key: "b", Outcome: OutcomeIndexed}, now.Add(10*time.Second))
	if v := run.View(now.Add(10 * time.Second)); v.Progress != 0.5 || v.EstimatedTimeRemainingSeconds == nil || *v.EstimatedTimeRemainingSeconds != 10 {
		t.Fatalf("running view: progress %v eta %v", v.Progress, v.EstimatedTimeRemainingSeconds)
	}
}

// TestSyncSweepsOnlyAfterACompleteListing: a sync waits for its sweep once
// every listed object has an outcome, counts what the sweep deleted once
// (its own per-object events are not counted again), and ends
// completed_with_errors when the sweep was refused; a listing max_files cut
// skips the sweep.
func TestSyncSweepsOnlyAfterACompleteListing(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	sync := func() *JobStatus {
		s := NewJobStatus(&Job{JobID: "job_s", Org: "org_1", Collection: "docs", Kind: JobBucket, Bucket: "b", Region: "eu-west-1",
			CredentialRef: "ref_1", DeleteMissing: true, CreatedAt: now})
		s.Apply(1, &JobEvent{Type: JobPlanned, Tasks: 2, Last: true}, now)
		s.Apply(2, &ObjectEvent{Key: "a", Outcome: OutcomeIndexed}, now)
		s.Apply(3, &ObjectEvent{Key: "b", Outcome: OutcomeIndexed}, now)
		return s
	}
	s := sync()
	if s.Status != JobStatusRunning || !s.Sweeping() || s.Final() {
		t.Fatalf("listed sync: status %s sweep %+v", s.Status, s.Sweep)
	}
	if j := s.SweepJob(); !j.Sweep || j.Page != 1 || j.Region != "eu-west-1" || j.CredentialRef != "ref_1" || j.Bucket != "b" {
		t.Fatalf("sweep job %+v", j)
	}
	s.RequestHash, s.LastEventSeq = "h_1", 3
	shown, _ := json.Marshal(s.View(now))
	for _, internal := range []string{"credential_ref", "request_hash", "last_event_seq", "pages_planned", "last_page", "lanes", "ref_1"} {
		if strings.Contains(string(shown), internal) {
			t.Errorf("the view shows %s: %s", internal, shown)
		}
	}
	if s.CredentialRef != "ref_1" || s.LastPage != 0 || s.PagesPlanned != 1 || s.LanesDone != 1 || len(s.Lanes) != 0 {
		t.Fatalf("the record lost its bookkeeping: %+v", s)
	}
	s.Apply(4, &ObjectEvent{Key: "gone", Outcome: OutcomeDeleted, Reason: ReasonSwept}, now)
	s.Apply(5, &JobEvent{Type: JobSwept, Sweep: &Sweep{Status: SweepDone, Held: 3, Candidates: 1, Deleted: 1}}, now)
	if s.Status != JobStatusCompleted || s.FilesDeleted != 1 || s.FilesTotal != 3 || s.View(now).Progress != 1 {
		t.Fatalf("swept sync: %s deleted %d total %d", s.Status, s.FilesDeleted, s.FilesTotal)
	}
	if s.Apply(6, &JobEvent{Type: JobSwept, Sweep: &Sweep{Status: SweepDone, Deleted: 5}}, now); s.FilesDeleted != 1 {
		t.Fatalf("a second sweep event counted: %d", s.FilesDeleted)
	}

	r := sync()
	r.Apply(4, &JobEvent{Type: JobSwept, Sweep: &Sweep{Status: SweepRefused, Held: 2, Candidates: 2, Reason: "too many"}}, now)
	if r.Status != JobStatusCompletedWithErrors || r.FilesDeleted != 0 {
		t.Fatalf("refused sweep: %s", r.Status)
	}

	c := NewJobStatus(&Job{JobID: "job_c", Org: "org_1", Collection: "docs", Kind: JobBucket, Bucket: "b", DeleteMissing: true, CreatedAt: now})
	c.Apply(1, &JobEvent{Type: JobPlanned, Tasks: 1, Last: true, Cut: true}, now)
	c.Apply(2, &ObjectEvent{Key: "a", Outcome: OutcomeIndexed}, now)
	if c.Status != JobStatusCompleted || c.Sweep.Status != SweepSkipped || c.Sweeping() {
		t.Fatalf("cut listing: %s sweep %+v", c.Status, c.Sweep)
	}

	f := NewJobStatus(&Job{JobID: "job_f", Org: "org_1", Collection: "docs", Kind: JobFile, Bucket: "b", Key: "k", DeleteMissing: true, CreatedAt: now})
	if f.Sweep != nil {
		t.Fatal("a file job has a sweep")
	}
}

// An erase job learns its total as it goes: each erased document counts in
// the total and as deleted, with its chunks; a redelivered batch counts
// nothing twice; its end (JobPlanned, Last) completes it; an erase of
// nothing completes at once.
func TestEraseJobFold(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	s := NewJobStatus(&Job{JobID: "job_w", Org: "org_1", Collection: "docs", Kind: JobWipe, CreatedAt: now})
	if s.Sweep != nil {
		t.Fatal("an erase job is not a sync")
	}
	for i := range 3 {
		s.Apply(uint64(i+1), &ObjectEvent{Key: fmt.Sprintf("k%d", i), Outcome: OutcomeDeleted, Reason: ReasonErased, Chunks: 2}, now)
	}
	s.Apply(2, &ObjectEvent{Key: "k1", Outcome: OutcomeDeleted, Reason: ReasonErased, Chunks: 2}, now) // redelivered
	if s.Status != JobStatusRunning || s.FilesTotal != 3 || s.FilesDeleted != 3 || s.ChunksDeleted != 6 {
		t.Fatalf("before the end: %+v", s)
	}
	s.Apply(4, &JobEvent{Type: JobPlanned, Page: 0, Last: true}, now)
	if s.Status != JobStatusCompleted || s.FilesTotal != 3 || len(s.Errors) != 0 {
		t.Fatalf("ended: %+v", s)
	}
	empty := NewJobStatus(&Job{JobID: "job_e", Org: "org_1", Collection: "docs", Kind: JobDeleteDocument, Document: DocumentID("b", "k"), CreatedAt: now})
	empty.Apply(1, &JobEvent{Type: JobPlanned, Page: 0, Last: true}, now)
	if empty.Status != JobStatusCompleted || empty.FilesTotal != 0 || empty.Document == "" {
		t.Fatalf("nothing to erase: %+v", empty)
	}
}

func TestEraseJobValidate(t *testing.T) {
	ok := &Job{JobID: "job_w", Org: "org_1", Collection: "docs", Kind: JobWipe}
	if err := ok.Validate(); err != nil {
		t.Fatalf("a wipe needs no bucket or integration: %v", err)
	}
	bad := &Job{JobID: "job_d", Org: "org_1", Collection: "docs", Kind: JobDeleteDocument, Document: "../x"}
	if err := bad.Validate(); err == nil {
		t.Fatal("a delete of a malformed document ID is valid")
	}
	noInt := &Job{JobID: "job_i", Org: "org_1", Collection: "docs", Kind: JobBucket, Bucket: "b"}
	if err := noInt.Validate(); err == nil {
		t.Fatal("an index job without an integration is valid")
	}
}

func TestSeqRuns(t *testing.T) {
	var runs []SeqRun
	for _, s := range []uint64{10, 11, 12, 20, 21, 30} {
		runs = AppendSeq(runs, s)
	}
	if fmt.Sprint(runs) != "[[10 3] [20 2] [30 1]]" || SeqCount(runs) != 6 {
		t.Fatalf("runs %v", runs)
	}
	if got := fmt.Sprint(Seqs(runs, 4)); got != "[10 11 12 20]" {
		t.Fatalf("seqs %s", got)
	}
}
