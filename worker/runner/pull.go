package runner

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// puller claims one message at a time from any org's consumer through one
// long-lived inbox subscription. jetstream's Fetch makes a subscription for
// every pull (SUB, the request, UNSUB, a goroutine and its channels): with a
// pull per task that cost nats-server and the worker more than the pull
// itself. Each claim slot owns one puller and has at most one pull in
// flight: a no-wait request for one message, answered by exactly one
// message or one status. A pull whose answer does not come in time, or is
// abandoned, takes the subscription with it: the next pull has a new inbox,
// so a late answer never passes for the answer to another pull (a message
// sent to the old inbox is redelivered after its AckWait).
type puller struct {
	nc     *nats.Conn
	sub    *nats.Subscription
	ch     chan *nats.Msg // the subscription's messages
	inbox  string
	wait   time.Duration // how long a pull's answer may take
	prefix string        // the JetStream API prefix: see apiPrefix
}

// pullWait is how long a pull's answer may take: a no-wait pull is
// answered at once unless nats-server is saturated.
const pullWait = 5 * time.Second

// pullAnswers is the room for answers on a puller's inbox: a pull is
// answered by one message (the message or a status), and a pull whose
// answer did not come leaves the inbox.
const pullAnswers = 4

// noWaitOne is the CONSUMER.MSG.NEXT request of every pull: one message,
// answered at once (the message, or a status saying there is none).
var noWaitOne = []byte(`{"batch":1,"no_wait":true}`)

// newPuller returns a puller on js's connection that sends its pulls under
// js's API prefix.
func newPuller(js jetstream.JetStream, wait time.Duration) *puller {
	return &puller{nc: js.Conn(), wait: wait, prefix: apiPrefix(js)}
}

// apiPrefix is the subject prefix js sends JetStream API requests under:
// "$JS.API." by default, "$JS.<domain>.API." for a JetStream domain (a leaf
// node's, or a hub's seen from a leaf), or the prefix js was made with (an
// account import).
func apiPrefix(js jetstream.JetStream) string {
	switch o := js.Options(); {
	case o.Domain != "":
		return "$JS." + o.Domain + ".API."
	case o.APIPrefix != "":
		return strings.TrimSuffix(o.APIPrefix, ".") + "."
	}
	return jetstream.DefaultAPIPrefix
}

func (p *puller) close() {
	if p.sub != nil {
		_ = p.sub.Unsubscribe()
		p.sub = nil
	}
}

// pull takes one message from stream's consumer if it has one now. The
// errors are jetstream's: ErrNoMessages when it has none,
// ErrConsumerDeleted or nats.ErrNoResponders when the consumer is gone.
func (p *puller) pull(ctx context.Context, stream, consumer string) (jetstream.Msg, error) {
	if p.sub == nil {
		// A channel of its own, not SubscribeSync's: that one holds
		// SubChanLen (65,536) messages, half a megabyte a claim slot,
		// for the one answer a pull gets.
		p.inbox, p.ch = p.nc.NewInbox(), make(chan *nats.Msg, pullAnswers)
		sub, err := p.nc.ChanSubscribe(p.inbox, p.ch)
		if err != nil {
			return nil, err
		}
		p.sub = sub
	}
	if err := p.nc.PublishRequest(p.prefix+"CONSUMER.MSG.NEXT."+stream+"."+consumer, p.inbox, noWaitOne); err != nil {
		p.close()
		return nil, err
	}
	timer := time.NewTimer(p.wait)
	defer timer.Stop()
	var m *nats.Msg
	select {
	case m = <-p.ch:
	case <-timer.C:
		p.close() // the answer may still come: not to this inbox's next pull
		return nil, nats.ErrTimeout
	case <-ctx.Done():
		p.close()
		return nil, ctx.Err()
	}
	if user, err := pulledStatus(m); !user {
		return nil, err
	}
	return &pulledMsg{m: m, nc: p.nc}, nil
}

// pulledStatus reports whether m is a stream message, or else the error
// its status means (as jetstream's own fetch maps them).
func pulledStatus(m *nats.Msg) (bool, error) {
	if strings.HasPrefix(m.Reply, "$JS.ACK.") {
		return true, nil
	}
	switch status := m.Header.Get("Status"); status {
	case "404", "408":
		return false, jetstream.ErrNoMessages
	case "503":
		return false, nats.ErrNoResponders
	case "409":
		descr := strings.ToLower(m.Header.Get("Description"))
		if strings.Contains(descr, "consumer deleted") {
			return false, jetstream.ErrConsumerDeleted
		}
		if strings.Contains(descr, "leadership change") {
			return false, jetstream.ErrConsumerLeadershipChanged
		}
		return false, fmt.Errorf("nats: %s", m.Header.Get("Description"))
	case "":
		return false, fmt.Errorf("nats: a pull was answered with neither a message nor a status (reply %q)", m.Reply)
	default:
		return false, fmt.Errorf("nats: pull answered %s %s", status, m.Header.Get("Description"))
	}
}

// The acknowledgement bodies of JetStream's protocol.
var (
	ackAck      = []byte("+ACK")
	ackNak      = []byte("-NAK")
	ackProgress = []byte("+WPI")
	ackTerm     = []byte("+TERM")
)

// pulledMsg is a message a puller claimed, as a jetstream.Msg. Its
// acknowledgements are published to the message's reply subject (as
// jetstream's are); DoubleAck waits for the server's answer.
type pulledMsg struct {
	m  *nats.Msg
	nc *nats.Conn
}

var _ jetstream.Msg = (*pulledMsg)(nil)

func (p *pulledMsg) Metadata() (*jetstream.MsgMetadata, error) {
	md, err := p.m.Metadata()
	if err != nil {
		return nil, err
	}
	return &jetstream.MsgMetadata{
		Sequence:     jetstream.SequencePair{Consumer: md.Sequence.Consumer, Stream: md.Sequence.Stream},
		NumDelivered: md.NumDelivered, NumPending: md.NumPending, Timestamp: md.Timestamp,
		Stream: md.Stream, Consumer: md.Consumer, Domain: md.Domain,
	}, nil
}

func (p *pulledMsg) Data() []byte         { return p.m.Data }
func (p *pulledMsg) Headers() nats.Header { return p.m.Header }
func (p *pulledMsg) Subject() string      { return p.m.Subject }
func (p *pulledMsg) Reply() string        { return p.m.Reply }
func (p *pulledMsg) Ack() error           { return p.nc.Publish(p.m.Reply, ackAck) }
func (p *pulledMsg) Nak() error           { return p.nc.Publish(p.m.Reply, ackNak) }
func (p *pulledMsg) InProgress() error    { return p.nc.Publish(p.m.Reply, ackProgress) }
func (p *pulledMsg) Term() error          { return p.nc.Publish(p.m.Reply, ackTerm) }
func (p *pulledMsg) TermWithReason(reason string) error {
	return p.nc.Publish(p.m.Reply, []byte("+TERM "+reason))
}

func (p *pulledMsg) NakWithDelay(delay time.Duration) error {
	if delay <= 0 {
		return p.Nak()
	}
	return p.nc.Publish(p.m.Reply, []byte(fmt.Sprintf(`-NAK {"delay": %d}`, delay.Nanoseconds())))
}

func (p *pulledMsg) DoubleAck(ctx context.Context) error {
	_, err := p.nc.RequestWithContext(ctx, p.m.Reply, ackAck)
	return err
}
