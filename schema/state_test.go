package schema

import (
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
