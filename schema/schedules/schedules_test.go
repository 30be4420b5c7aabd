package schedules

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/schema/natstest"
)

// Set refuses what the server would refuse (a bad cron, a zone that does
// not exist, both or neither of every and cron) with an InvalidError and
// leaves nothing behind; a replaced schedule keeps its last sync; Finished
// records a sync's end, and only a successful one moves last_synced_at.
func TestScheduleRecord(t *testing.T) {
	_, _, js := natstest.Start(t)
	ctx := context.Background()
	now := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	s, err := Open(ctx, js, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	job := &schema.Job{IntegrationID: "int_1", Kind: schema.JobBucket, Bucket: "b", Region: "us-east-1", DeleteMissing: true, CredentialRef: "ref"}
	for name, sc := range map[string]Schedule{
		"bad cron":      {Cron: "every tuesday"},
		"bad zone":      {Cron: "0 0 3 * * *", TimeZone: "Mars/Olympus"},
		"both":          {Every: "1h", Cron: "@daily"},
		"neither":       {},
		"too often":     {Every: "10ms"},
		"zone on every": {Every: "1h", TimeZone: "UTC"},
	} {
		sc.Org, sc.Collection, sc.Job = "org_1", "docs", job
		var invalid *InvalidError
		if _, err := s.Set(ctx, &sc); !errors.As(err, &invalid) {
			t.Errorf("%s: %v, want an InvalidError", name, err)
		}
	}
	if _, _, err := s.Get(ctx, "org_1", "docs"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a refused schedule left a record: %v", err)
	}
	sc, err := s.Set(ctx, &Schedule{Org: "org_1", Collection: "docs", Cron: "0 0 3 * * *", TimeZone: "Europe/Berlin", Job: job})
	if err != nil {
		t.Fatal(err)
	}
	if sc.Job.Schedule != "docs" || sc.Job.Org != "org_1" || sc.View().Job.CredentialRef != "" || sc.Class() != "daily" {
		t.Fatalf("record %+v", sc)
	}
	done := now.Add(time.Hour)
	fail := &schema.JobStatus{JobID: "sync_1", Org: "org_1", Schedule: "docs", Status: schema.JobStatusCompletedWithErrors, CompletedAt: &done,
		Sweep: &schema.Sweep{Status: schema.SweepRefused}}
	if err := s.Finished(ctx, fail); err != nil {
		t.Fatal(err)
	}
	got, _, _ := s.Get(ctx, "org_1", "docs")
	if got.LastSync == nil || got.LastSync.Sweep != schema.SweepRefused || got.LastSyncedAt != nil {
		t.Fatalf("a refused sweep counted as a sync: %+v", got)
	}
	ok := *fail
	ok.JobID, ok.Status, ok.Sweep = "sync_2", schema.JobStatusCompleted, &schema.Sweep{Status: schema.SweepDone}
	if err := s.Finished(ctx, &ok); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Set(ctx, &Schedule{Org: "org_1", Collection: "docs", Every: "6h", Job: job}); err != nil {
		t.Fatal(err)
	}
	got, _, _ = s.Get(ctx, "org_1", "docs")
	if got.Every != "6h" || got.Cron != "" || got.LastSyncedAt == nil || !got.LastSyncedAt.Equal(done) || got.LastSync.JobID != "sync_2" {
		t.Fatalf("replaced schedule: %+v", got)
	}
	if age, stale := got.Age(done.Add(11 * time.Hour)); stale || age != 11*time.Hour {
		t.Fatalf("11h after a sync of a 6h schedule: %s stale %v", age, stale)
	}
	if _, stale := got.Age(done.Add(13 * time.Hour)); !stale {
		t.Fatal("13h after a sync of a 6h schedule: not stale")
	}
	list, err := s.List(ctx, "org_1")
	if err != nil || len(list) != 1 {
		t.Fatalf("list %v %v", list, err)
	}
	if err := s.Clear(ctx, "org_1", "docs"); err != nil {
		t.Fatal(err)
	}
	if err := s.Clear(ctx, "org_1", "docs"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second clear: %v", err)
	}
}
