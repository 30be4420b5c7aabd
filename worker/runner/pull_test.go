package runner

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/stevedore-dev/stevedore/schema/natstest"
)

// pullStream makes a work-queue stream with one pull consumer on a real
// server, AckWait 1 s.
func pullStream(t *testing.T) (*nats.Conn, jetstream.JetStream, jetstream.Consumer) {
	t.Helper()
	_, nc, js := natstest.Start(t)
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "PULL", Subjects: []string{"pull.>"}, Retention: jetstream.WorkQueuePolicy}); err != nil {
		t.Fatal(err)
	}
	cons, err := js.CreateConsumer(ctx, "PULL", jetstream.ConsumerConfig{Durable: "c", AckPolicy: jetstream.AckExplicitPolicy, AckWait: time.Second, MaxDeliver: 5})
	if err != nil {
		t.Fatal(err)
	}
	return nc, js, cons
}

func TestPullerClaimsOneMessageAndAcknowledges(t *testing.T) {
	_, js, cons := pullStream(t)
	ctx := context.Background()
	p := newPuller(js, 5*time.Second)
	defer p.close()

	if _, err := p.pull(ctx, "PULL", "c"); !errors.Is(err, jetstream.ErrNoMessages) {
		t.Fatalf("empty consumer: %v, want ErrNoMessages", err)
	}
	for _, s := range []string{"pull.a", "pull.b"} {
		if _, err := js.Publish(ctx, s, []byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	// The consumer learns of a stored message a moment after the publish is
	// acknowledged (fair.go's done says the same): a no-wait pull right
	// away may find nothing.
	var m jetstream.Msg
	var err error
	waitFor(t, func() bool {
		m, err = p.pull(ctx, "PULL", "c")
		return err == nil
	})
	md, err := m.Metadata()
	if err != nil {
		t.Fatal(err)
	}
	if m.Subject() != "pull.a" || string(m.Data()) != "pull.a" || md.Stream != "PULL" || md.Consumer != "c" || md.NumDelivered != 1 || md.NumPending != 1 || md.Sequence.Stream != 1 {
		t.Fatalf("claimed %s %q %+v", m.Subject(), m.Data(), md)
	}
	// Exactly one message a pull: the second is still waiting.
	if info, _ := cons.Info(ctx); info.NumAckPending != 1 || info.NumPending != 1 {
		t.Fatalf("after one pull: ack pending %d, pending %d", info.NumAckPending, info.NumPending)
	}
	if err := m.InProgress(); err != nil {
		t.Fatal(err)
	}
	if err := m.DoubleAck(ctx); err != nil {
		t.Fatal(err)
	}
	// A Nak hands the message back at once; NakWithDelay later; Term never.
	m, err = p.pull(ctx, "PULL", "c")
	if err != nil || m.Subject() != "pull.b" {
		t.Fatalf("second pull: %v", err)
	}
	if err := m.Nak(); err != nil {
		t.Fatal(err)
	}
	// The nak is applied by the consumer a moment after it is sent.
	waitFor(t, func() bool {
		m, err = p.pull(ctx, "PULL", "c")
		return err == nil
	})
	if m.Subject() != "pull.b" {
		t.Fatalf("after a nak: %s", m.Subject())
	}
	if md, _ := m.Metadata(); md.NumDelivered != 2 {
		t.Fatalf("delivered %d times, want 2", md.NumDelivered)
	}
	if err := m.NakWithDelay(300 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if _, err := p.pull(ctx, "PULL", "c"); !errors.Is(err, jetstream.ErrNoMessages) {
		t.Fatalf("during the nak's delay: %v, want ErrNoMessages", err)
	}
	waitFor(t, func() bool {
		m, err = p.pull(ctx, "PULL", "c")
		return err == nil
	})
	if err := m.TermWithReason("poison"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond) // past AckWait: a terminated message is not redelivered
	if _, err := p.pull(ctx, "PULL", "c"); !errors.Is(err, jetstream.ErrNoMessages) {
		t.Fatalf("after term: %v, want ErrNoMessages", err)
	}
	if info, _ := cons.Info(ctx); info.NumAckPending != 0 || info.NumPending != 0 {
		t.Fatalf("at the end: ack pending %d, pending %d", info.NumAckPending, info.NumPending)
	}
}

func TestPullerReportsAGoneConsumer(t *testing.T) {
	_, js, _ := pullStream(t)
	ctx := context.Background()
	p := newPuller(js, 5*time.Second)
	defer p.close()
	if err := js.DeleteConsumer(ctx, "PULL", "c"); err != nil {
		t.Fatal(err)
	}
	_, err := p.pull(ctx, "PULL", "c")
	if !consumerGone(err) {
		t.Fatalf("pull from a deleted consumer: %v, want one consumerGone recognizes", err)
	}
}

// A pull whose answer does not come in time gives up its inbox: a late
// answer cannot pass for the answer to the next pull, and the message it
// carried is redelivered after AckWait.
func TestPullerTimeoutTakesANewInbox(t *testing.T) {
	_, js, _ := pullStream(t)
	ctx := context.Background()
	if _, err := js.Publish(ctx, "pull.a", []byte("a")); err != nil {
		t.Fatal(err)
	}
	p := newPuller(js, 5*time.Second)
	defer p.close()
	// A stream no server answers for: the request has no responders.
	if _, err := p.pull(ctx, "NOSUCH", "c"); !errors.Is(err, nats.ErrNoResponders) {
		t.Fatalf("no such stream: %v", err)
	}
	p.wait = time.Nanosecond // no answer can come in time
	first := p.inbox
	if _, err := p.pull(ctx, "PULL", "c"); !errors.Is(err, nats.ErrTimeout) {
		t.Fatalf("an answer that cannot come in time: %v, want nats.ErrTimeout", err)
	}
	if p.sub != nil {
		t.Fatal("the timed-out pull's inbox is still subscribed")
	}
	p.wait = 5 * time.Second
	// The message the abandoned pull claimed (if the server had answered)
	// comes back after AckWait; the next pull's inbox is new.
	var m jetstream.Msg
	waitFor(t, func() bool {
		var err error
		m, err = p.pull(ctx, "PULL", "c")
		return err == nil
	})
	if p.inbox == first {
		t.Fatal("the pull after a timeout used the same inbox")
	}
	if err := m.Ack(); err != nil {
		t.Fatal(err)
	}
	// A cancelled context ends a pull at once.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := p.pull(cctx, "PULL", "c"); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
}

// beatCounter is a message that counts its InProgress calls.
type beatCounter struct {
	jetstream.Msg
	mu    sync.Mutex
	beats int
}

func (b *beatCounter) InProgress() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.beats++
	return nil
}

func (b *beatCounter) count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.beats
}

// Heartbeats come every interval until stop; after stop returns, none.
func TestHeartbeatsUntilStopped(t *testing.T) {
	a, b := &beatCounter{}, &beatCounter{}
	stop := heartbeats([]jetstream.Msg{a, b}, 5*time.Millisecond)
	waitFor(t, func() bool { return a.count() >= 3 && b.count() >= 3 })
	stop()
	n := a.count()
	time.Sleep(30 * time.Millisecond)
	if a.count() != n {
		t.Fatalf("%d beats after stop", a.count()-n)
	}
	// A task shorter than the interval sends none.
	c := &beatCounter{}
	heartbeats([]jetstream.Msg{c}, time.Hour)()
	if c.count() != 0 {
		t.Fatal("a beat for a message settled before its first interval")
	}
}

// TestPullerHonoursAJetStreamDomain: pulls go under the JetStream API
// prefix the worker's JetStream was made with; "$JS.API." spelled out made a
// worker on a leaf node (a JetStream domain) or behind an account import
// pull from nothing.
func TestPullerHonoursAJetStreamDomain(t *testing.T) {
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, JetStreamDomain: "hub", StoreDir: t.TempDir(), NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	defer srv.Shutdown()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.NewWithDomain(nc, "hub")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "PULL", Subjects: []string{"pull.>"}, Retention: jetstream.WorkQueuePolicy}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateConsumer(ctx, "PULL", jetstream.ConsumerConfig{Durable: "c", AckPolicy: jetstream.AckExplicitPolicy}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "pull.a", []byte("a")); err != nil {
		t.Fatal(err)
	}
	p := newPuller(js, 5*time.Second)
	defer p.close()
	if p.prefix != "$JS.hub.API." {
		t.Fatalf("prefix %q", p.prefix)
	}
	var m jetstream.Msg
	waitFor(t, func() bool {
		m, err = p.pull(ctx, "PULL", "c")
		return err == nil
	})
	if string(m.Data()) != "a" {
		t.Fatalf("claimed %q", m.Data())
	}
	if err := m.Ack(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		js   func() (jetstream.JetStream, error)
		want string
	}{
		{func() (jetstream.JetStream, error) { return jetstream.New(nc) }, "$JS.API."},
		{func() (jetstream.JetStream, error) { return jetstream.NewWithAPIPrefix(nc, "$JS.tenant.API") }, "$JS.tenant.API."},
	} {
		j, err := tc.js()
		if err != nil {
			t.Fatal(err)
		}
		if got := apiPrefix(j); got != tc.want {
			t.Errorf("apiPrefix %q, want %q", got, tc.want)
		}
	}
}

// TestPullerRequestSubject: a JetStream server with a domain answers the
// plain "$JS.API." too, so the test above would pass with the prefix
// ignored. Here only a responder on the domain's subject answers (with
// JetStream's "no messages" status, as the server would): a pull under any
// other prefix finds no responder.
func TestPullerRequestSubject(t *testing.T) {
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	defer srv.Shutdown()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	subjects := make(chan string, 1)
	if _, err := nc.Subscribe("$JS.hub.API.CONSUMER.MSG.NEXT.PULL.c", func(m *nats.Msg) {
		subjects <- m.Subject
		reply := nats.NewMsg(m.Reply)
		reply.Header.Set("Status", "404")
		_ = nc.PublishMsg(reply)
	}); err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.NewWithDomain(nc, "hub")
	if err != nil {
		t.Fatal(err)
	}
	p := newPuller(js, 5*time.Second)
	defer p.close()
	if _, err := p.pull(context.Background(), "PULL", "c"); !errors.Is(err, jetstream.ErrNoMessages) {
		t.Fatalf("pull: %v, want the domain responder's ErrNoMessages", err)
	}
	if got := <-subjects; got != "$JS.hub.API.CONSUMER.MSG.NEXT.PULL.c" {
		t.Fatalf("pulled on %s", got)
	}
}

// TestPullersAreSmall: a worker holds a puller per claim slot of every
// queue (about thirty at the defaults, a hundred at higher concurrency);
// each has one answer at a time to hold, and holds no more. (nats.go's
// SubscribeSync buffers 65,536 messages: half a megabyte a slot, a third of
// the worker's memory at 32 slots.)
func TestPullersAreSmall(t *testing.T) {
	_, js, _ := pullStream(t)
	const n = 64
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	before := heap()
	pullers := make([]*puller, n)
	for i := range pullers {
		pullers[i] = newPuller(js, 5*time.Second)
		if _, err := pullers[i].pull(context.Background(), "PULL", "c"); !errors.Is(err, jetstream.ErrNoMessages) {
			t.Fatalf("pull: %v", err)
		}
	}
	grew := int64(heap()) - int64(before)
	for _, p := range pullers {
		p.close()
	}
	if grew > 4<<20 {
		t.Fatalf("%d pullers with their inboxes take %d KiB", n, grew>>10)
	}
}
