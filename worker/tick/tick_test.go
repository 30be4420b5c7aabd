package tick

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/schema/schedules"
	"github.com/stevedore-dev/stevedore/worker/handlertest"
	"github.com/stevedore-dev/stevedore/worker/meter"
)

// tickMsg is a tick as the runner hands it over.
type tickMsg struct {
	jetstream.Msg
	subject string
	seq     uint64
	hdr     nats.Header
}

func (m tickMsg) Subject() string      { return m.subject }
func (m tickMsg) Data() []byte         { return nil }
func (m tickMsg) Headers() nats.Header { return m.hdr }
func (m tickMsg) Metadata() (*jetstream.MsgMetadata, error) {
	return &jetstream.MsgMetadata{Stream: schema.StreamSchedules, Sequence: jetstream.SequencePair{Stream: m.seq}, Timestamp: time.Now()}, nil
}

// A tick starts one sync; the same tick again (redelivered, or fired twice
// around a leader change: the same next-tick time under another sequence)
// starts nothing more; a tick while that sync runs starts none; a tick of
// a cleared schedule starts none.
func TestTickStartsOneSync(t *testing.T) {
	e := handlertest.Start(t)
	ctx := context.Background()
	store, err := schedules.Open(ctx, e.JS, nil)
	if err != nil {
		t.Fatal(err)
	}
	m := meter.New(nil)
	h := New(e.Jobs, store, m, nil)
	job := &schema.Job{IntegrationID: e.In.ID, Kind: schema.JobBucket, Bucket: handlertest.Bucket, Region: "us-east-1", SkipExisting: true, DeleteMissing: true}
	if _, err := store.Set(ctx, &schedules.Schedule{Org: e.Org.ID, Collection: "docs", Every: "1h", Job: job}); err != nil {
		t.Fatal(err)
	}
	next := time.Date(2026, 12, 7, 1, 0, 0, 0, time.UTC)
	tick := func(seq uint64, next time.Time) tickMsg {
		return tickMsg{subject: schema.TickSubject(e.Org.ID, "docs"), seq: seq, hdr: nats.Header{"Nats-Schedule-Next": []string{next.Format(time.RFC3339Nano)}}}
	}
	for _, msg := range []tickMsg{tick(7, next), tick(7, next), tick(9, next)} {
		if err := h.Handle(ctx, msg); err != nil {
			t.Fatal(err)
		}
	}
	id := JobID(e.Org.ID, "docs", "next:"+next.Format(time.RFC3339Nano))
	st, _, err := e.Jobs.Get(ctx, e.Org.ID, id)
	if err != nil || st.Schedule != "docs" || st.Sweep == nil || st.Bucket != handlertest.Bucket {
		t.Fatalf("the sync: %+v %v", st, err)
	}
	jobsStream, _ := e.JS.Stream(ctx, schema.StreamJobs)
	if info, _ := jobsStream.Info(ctx); info.State.Msgs != 1 {
		t.Fatalf("%d job pages published, want 1", info.State.Msgs)
	}
	sc, _, err := store.Get(ctx, e.Org.ID, "docs")
	if err != nil || sc.LastJobID != id || sc.NextSyncAt == nil || !sc.NextSyncAt.Equal(next) {
		t.Fatalf("schedule %+v %v", sc, err)
	}
	// The sync still runs: the next tick starts none.
	if err := h.Handle(ctx, tick(11, next.Add(time.Hour))); err != nil {
		t.Fatal(err)
	}
	if info, _ := jobsStream.Info(ctx); info.State.Msgs != 1 {
		t.Fatalf("a tick during a sync started another: %d pages", info.State.Msgs)
	}
	if err := store.Clear(ctx, e.Org.ID, "docs"); err != nil {
		t.Fatal(err)
	}
	if err := h.Handle(ctx, tick(12, next.Add(2*time.Hour))); err != nil {
		t.Fatal(err)
	}
	for outcome, want := range map[string]float64{"started": 1, "duplicate": 2, "overlap": 1, "cleared": 1} {
		if got := testutil.ToFloat64(m.Ticks.WithLabelValues(outcome)); got != want {
			t.Errorf("ticks %s: %v, want %v", outcome, got, want)
		}
	}
}
