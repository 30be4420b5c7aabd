package track

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/schema/jobs"
	"github.com/stevedore-dev/stevedore/schema/natstest"
	"github.com/stevedore-dev/stevedore/worker/meter"
)

// event is an EVENTS message as the runner hands it over.
type event struct {
	jetstream.Msg
	subject string
	data    []byte
	seq     uint64
}

func (e event) Subject() string { return e.subject }
func (e event) Data() []byte    { return e.data }
func (e event) Metadata() (*jetstream.MsgMetadata, error) {
	return &jetstream.MsgMetadata{Stream: schema.StreamEvents, Sequence: jetstream.SequencePair{Stream: e.seq}}, nil
}

func encoded(t *testing.T, seq uint64, v any) event {
	t.Helper()
	data, err := schema.Encode(v)
	if err != nil {
		t.Fatal(err)
	}
	subject := ""
	switch m := v.(type) {
	case *schema.JobEvent:
		subject = schema.JobEventSubject(m.Org, m.Collection)
	case *schema.ObjectEvent:
		subject = schema.ObjectEventSubject(m.Org, m.Collection)
	}
	return event{subject: subject, data: data, seq: seq}
}

// A batch is folded into its jobs; an unreadable event goes to giveUp and
// the rest is folded; a job that ends is counted once.
func TestHandleBatchFoldsAndGivesUpOnTheUnreadable(t *testing.T) {
	_, _, js := natstest.Start(t)
	ctx := context.Background()
	store, err := jobs.Open(ctx, js, nil)
	if err != nil {
		t.Fatal(err)
	}
	job := &schema.Job{JobID: "job_t", Org: "org_1", Collection: "docs", Kind: schema.JobBucket, Bucket: "b", CreatedAt: time.Now()}
	if err := store.Create(ctx, schema.NewJobStatus(job)); err != nil {
		t.Fatal(err)
	}
	m := meter.New(nil)
	h := New(store, nil, m, nil)
	obj := func(key string) *schema.ObjectEvent {
		return &schema.ObjectEvent{EventID: "ev-" + key, JobID: "job_t", Org: "org_1", Collection: "docs", Bucket: "b", Key: key, Outcome: schema.OutcomeIndexed, Chunks: 1, Tokens: 3, At: time.Now()}
	}
	batch := []jetstream.Msg{
		encoded(t, 1, &schema.JobEvent{EventID: "planned-0", JobID: "job_t", Org: "org_1", Collection: "docs", Type: schema.JobPlanned, Tasks: 2, Last: true, At: time.Now()}),
		encoded(t, 2, obj("a.txt")),
		event{subject: schema.ObjectEventSubject("org_1", "docs"), data: []byte("{not an event"), seq: 3},
		encoded(t, 4, obj("b.txt")),
	}
	var given []uint64
	giveUp := func(msg jetstream.Msg, err error) error {
		md, _ := msg.Metadata()
		given = append(given, md.Sequence.Stream)
		return nil
	}
	if err := h.HandleBatch(ctx, batch, giveUp); err != nil {
		t.Fatal(err)
	}
	if len(given) != 1 || given[0] != 3 {
		t.Fatalf("given up: %v, want [3]", given)
	}
	st, _, err := store.Get(ctx, "org_1", "job_t")
	if err != nil || st.Status != schema.JobStatusCompleted || st.FilesIndexed != 2 || st.TokensUsed != 6 {
		t.Fatalf("job %+v, %v", st, err)
	}
	// Redelivered after a crash: nothing is counted twice, nothing ends twice.
	if err := h.HandleBatch(ctx, batch, giveUp); err != nil {
		t.Fatal(err)
	}
	if st, _, _ := store.Get(ctx, "org_1", "job_t"); st.FilesIndexed != 2 {
		t.Fatalf("folded twice: %+v", st)
	}
	if n := testutil.ToFloat64(m.JobsFinished.WithLabelValues(schema.JobStatusCompleted)); n != 1 {
		t.Fatalf("jobs finished counted %v times", n)
	}
	// An unreadable event that cannot be dead-lettered hands the batch back.
	refuse := func(jetstream.Msg, error) error { return errors.New("DEAD unavailable") }
	if err := h.HandleBatch(ctx, batch, refuse); err == nil {
		t.Fatal("the batch was taken though an event could not be dead-lettered")
	}
}
