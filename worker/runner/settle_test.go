package runner

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/stevedore-dev/stevedore/schema"
)

// TestFate is the whole give-up policy, stated literally: for every error
// class, the action on a first delivery and on the last of MaxDeliver 8, and
// on a ninth delivery where MaxDeliver is unlimited (the tracker's -1).
func TestFate(t *testing.T) {
	tests := []struct {
		class                  schema.ErrorClass
		first, last, unlimited action
	}{
		{schema.ClassTenantAuth, actDead, actDead, actDead},
		{schema.ClassTenantPermission, actDead, actDead, actDead},
		{schema.ClassKMS, actDead, actDead, actDead},
		{schema.ClassOurCredentials, actRetry, actDead, actRetry},
		{schema.ClassThrottled, actRetry, actDead, actRetry},
		{schema.ClassTransient, actRetry, actDead, actRetry},
		{schema.ClassNotFound, actRecord, actRecord, actRecord},
		{schema.ClassStaleToken, actRetry, actDead, actRetry},
		{schema.ClassPermanent, actDead, actDead, actDead},
		{schema.ClassMaxDeliver, actDead, actDead, actDead},
		{schema.ClassInternal, actDead, actDead, actDead},
	}
	if len(tests) != len(schema.ErrorClasses) {
		t.Fatalf("%d classes in the table, %d in schema.ErrorClasses", len(tests), len(schema.ErrorClasses))
	}
	for _, tt := range tests {
		f := &schema.ClassError{Err: errors.New("x"), Class: tt.class}
		for _, c := range []struct {
			delivered  uint64
			maxDeliver int
			want       action
		}{{1, 8, tt.first}, {8, 8, tt.last}, {9, -1, tt.unlimited}} {
			if got := fate(f, false, c.delivered, c.maxDeliver); got != c.want {
				t.Errorf("%s, delivery %d of %d: %s, want %s", tt.class, c.delivered, c.maxDeliver, got, c.want)
			}
			if got := fate(f, true, c.delivered, c.maxDeliver); got != actHandBack {
				t.Errorf("%s while shutting down: %s, want handed_back", tt.class, got)
			}
		}
	}
	if got := fate(nil, false, 8, 8); got != actAck {
		t.Errorf("success: %s, want ack", got)
	}
}

// fakeMsg is a jetstream.Msg that records how it was settled.
type fakeMsg struct {
	subject   string
	data      []byte
	delivered uint64
	seq       uint64
	acked     int
	naks      []time.Duration
	termed    int
}

func (m *fakeMsg) Metadata() (*jetstream.MsgMetadata, error) {
	return &jetstream.MsgMetadata{Stream: schema.StreamTasks, NumDelivered: m.delivered, Sequence: jetstream.SequencePair{Stream: m.seq}}, nil
}

func (m *fakeMsg) Data() []byte { return m.data }

func (m *fakeMsg) Headers() nats.Header { return nil }

func (m *fakeMsg) Subject() string { return m.subject }

func (m *fakeMsg) Reply() string { return "" }

func (m *fakeMsg) Ack() error { m.acked++; return nil }

func (m *fakeMsg) DoubleAck(context.Context) error { m.acked++; return nil }

func (m *fakeMsg) Nak() error { m.naks = append(m.naks, 0); return nil }

func (m *fakeMsg) NakWithDelay(d time.Duration) error { m.naks = append(m.naks, d); return nil }

func (m *fakeMsg) InProgress() error { return nil }

func (m *fakeMsg) Term() error { m.termed++; return nil }

func (m *fakeMsg) TermWithReason(reason string) error { m.termed++; return nil }

// TestDeadLetterPublishFailureRedelivers: when the DEAD copy cannot be
// published, the message is naked with backoff, never terminated
// unrecorded; once DEAD is back, the next delivery is dead-lettered and the
// handler's give-up outcome is recorded once.
func TestDeadLetterPublishFailureRedelivers(t *testing.T) {
	js, r, q := fakeRunner(t, nil)
	ctx := context.Background()
	msg := &fakeMsg{subject: schema.TaskSubject("org_1", "docs"), data: []byte("poison"), delivered: 1, seq: 42}
	if err := js.DeleteStream(ctx, schema.StreamDead); err != nil {
		t.Fatal(err)
	}
	perm := schema.Errorf(schema.ClassPermanent, "unreadable in a way no retry fixes")
	r.settle(ctx, ctx, msg, q, perm)
	if msg.termed != 0 || msg.acked != 0 || len(msg.naks) != 1 || msg.naks[0] != backoff(1) {
		t.Fatalf("DEAD unavailable: termed %d acked %d naks %v; want one nak with backoff", msg.termed, msg.acked, msg.naks)
	}

	if err := (schema.Topology{AckWait: 2 * time.Second}).Ensure(ctx, js); err != nil {
		t.Fatal(err)
	}
	msg.delivered = 2
	r.settle(ctx, ctx, msg, q, perm)
	if msg.termed != 1 {
		t.Fatalf("DEAD back: termed %d, naks %v", msg.termed, msg.naks)
	}
	dead, _ := js.Stream(ctx, schema.StreamDead)
	raw, err := dead.GetLastMsgForSubject(ctx, schema.DeadSubject(schema.StreamTasks))
	if err != nil {
		t.Fatal(err)
	}
	dl, err := schema.DecodeDeadLetter(raw.Data)
	if err != nil || dl.Sequence != 42 || dl.ErrorClass != string(schema.ClassPermanent) || string(dl.Payload) != "poison" {
		t.Fatalf("dead letter %+v, %v", dl, err)
	}
	// The give-up outcome was published by both attempts with one ID: one
	// event; GaveUp ran once, after it was durable.
	if n := outcomes(t, js); n != 1 {
		t.Fatalf("%d give-up outcomes, want 1", n)
	}
	if n := q.Handler.(*fakeHandler).gaveUp.Load(); n != 1 {
		t.Fatalf("GaveUp ran %d times, want 1", n)
	}
}

// TestGiveUpThatCannotRecordRedelivers: a handler whose give-up outcome
// cannot be recorded (the failed status write failed) keeps the message:
// naked with backoff, nothing in DEAD, no outcome, the failure counted;
// the next delivery, with the status writable again, gives up once.
func TestGiveUpThatCannotRecordRedelivers(t *testing.T) {
	js, r, q := fakeRunner(t, nil)
	ctx := context.Background()
	h := q.Handler.(*fakeHandler)
	h.failGiveUps.Store(2)
	for _, class := range []schema.ErrorClass{schema.ClassPermanent, schema.ClassNotFound} {
		msg := &fakeMsg{subject: schema.TaskSubject("org_1", "docs"), data: []byte("poison-" + string(class)), delivered: 1, seq: 42}
		r.settle(ctx, ctx, msg, q, schema.Errorf(class, "no retry fixes this"))
		if msg.termed != 0 || msg.acked != 0 || len(msg.naks) != 1 || msg.naks[0] != backoff(1) {
			t.Fatalf("%s, give-up unrecordable: termed %d acked %d naks %v; want one nak with backoff", class, msg.termed, msg.acked, msg.naks)
		}
	}
	dead, _ := js.Stream(ctx, schema.StreamDead)
	if info, _ := dead.Info(ctx); info.State.Msgs != 0 {
		t.Fatalf("%d dead letters for give-ups that were not recorded", info.State.Msgs)
	}
	if n := outcomes(t, js); n != 0 || h.gaveUp.Load() != 0 {
		t.Fatalf("%d outcomes, GaveUp %d: want none", n, h.gaveUp.Load())
	}
	if got := testutil.ToFloat64(r.m.giveUpFailed.WithLabelValues("fake")); got != 2 {
		t.Fatalf("give-up failures %v, want 2", got)
	}

	msg := &fakeMsg{subject: schema.TaskSubject("org_1", "docs"), data: []byte("poison"), delivered: 2, seq: 42}
	r.settle(ctx, ctx, msg, q, schema.Errorf(schema.ClassPermanent, "no retry fixes this"))
	if msg.termed != 1 || outcomes(t, js) != 1 || h.gaveUp.Load() != 1 {
		t.Fatalf("status writable again: termed %d, %d outcomes, GaveUp %d", msg.termed, outcomes(t, js), h.gaveUp.Load())
	}
}

// TestMaxDeliverRetriesAGiveUpThatCannotRecord: the advisory's move to DEAD
// is tried again when the handler's outcome cannot be recorded at first;
// the message leaves its queue only once its give-up is recorded.
func TestMaxDeliverRetriesAGiveUpThatCannotRecord(t *testing.T) {
	js, r, q := fakeRunner(t, nil)
	ctx := context.Background()
	ack, err := js.Publish(ctx, schema.TaskSubject("org_1", "docs"), []byte("crashes-every-time"))
	if err != nil {
		t.Fatal(err)
	}
	h := q.Handler.(*fakeHandler)
	h.failGiveUps.Store(1)
	if err := r.moveToDeadRetrying(ctx, maxDeliverAdvisory{Stream: schema.StreamTasks, StreamSeq: ack.Sequence, Deliveries: 3}); err != nil {
		t.Fatal(err)
	}
	tasks, _ := js.Stream(ctx, schema.StreamTasks)
	dead, _ := js.Stream(ctx, schema.StreamDead)
	ti, _ := tasks.Info(ctx)
	di, _ := dead.Info(ctx)
	if ti.State.Msgs != 0 || di.State.Msgs != 1 || outcomes(t, js) != 1 || h.gaveUp.Load() != 1 {
		t.Fatalf("TASKS %d, DEAD %d, %d outcomes, GaveUp %d; want 0, 1, 1, 1", ti.State.Msgs, di.State.Msgs, outcomes(t, js), h.gaveUp.Load())
	}
	if got := testutil.ToFloat64(r.m.giveUpFailed.WithLabelValues("fake")); got != 1 {
		t.Fatalf("give-up failures %v, want 1", got)
	}
}

// TestNotFoundIsRecordedNotDeadLettered: a vanished object fails in its
// job (the give-up outcome), the message is acked, and nothing goes to DEAD.
func TestNotFoundIsRecordedNotDeadLettered(t *testing.T) {
	js, r, q := fakeRunner(t, nil)
	ctx := context.Background()
	msg := &fakeMsg{subject: schema.TaskSubject("org_1", "docs"), data: []byte("gone"), delivered: 1, seq: 7}
	r.settle(ctx, ctx, msg, q, schema.Errorf(schema.ClassNotFound, "NoSuchKey"))
	if msg.acked != 1 || msg.termed != 0 || len(msg.naks) != 0 {
		t.Fatalf("acked %d termed %d naks %v", msg.acked, msg.termed, msg.naks)
	}
	dead, _ := js.Stream(ctx, schema.StreamDead)
	if info, _ := dead.Info(ctx); info.State.Msgs != 0 {
		t.Fatalf("%d dead letters for a vanished object", info.State.Msgs)
	}
	if n := outcomes(t, js); n != 1 {
		t.Fatalf("%d give-up outcomes, want 1", n)
	}
}
