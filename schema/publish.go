package schema

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// PublishAckTimeout bounds the wait for one asynchronous publish's
// acknowledgement; every JetStream context of ours is made with it
// (NewJetStream). Without it nats.go waits for ever: an acknowledgement
// lost while a stream's leader changes held a handler for its whole
// deadline (an hour for a sweep). Past it the publish fails, the work is
// retried, and the stream's duplicate window drops what had been stored.
const PublishAckTimeout = 15 * time.Second

// NewJetStream is jetstream.New with PublishAckTimeout.
func NewJetStream(nc *nats.Conn) (jetstream.JetStream, error) {
	return jetstream.New(nc, jetstream.WithPublishAsyncTimeout(PublishAckTimeout))
}

// Out is one message to publish with its deterministic Nats-Msg-Id.
type Out struct {
	Subject, MsgID string
	Msg            any
	// Data, when set, is the message already encoded (a TaskPage's task);
	// Msg is then not encoded, and may be nil.
	Data []byte
	// Seq, when set, receives the stream sequence JetStream stored the
	// message at (the first copy's for a duplicate): object states record
	// where their chunks are, so a document is read back without a scan.
	Seq *uint64
}

// PublishAll encodes and publishes msgs asynchronously and waits until
// JetStream has acknowledged every one. A retried call republishes with the
// same IDs, which the stream's duplicate window turns into no-ops; it returns
// how many acknowledgements said so. An encoding failure wraps ErrPermanent.
func PublishAll(ctx context.Context, js jetstream.JetStream, msgs []Out) (duplicates int, err error) {
	futures := make([]jetstream.PubAckFuture, 0, len(msgs))
	for _, m := range msgs {
		data := m.Data
		if data == nil {
			var err error
			if data, err = Encode(m.Msg); err != nil {
				return 0, fmt.Errorf("%w: encode %s: %v", ErrPermanent, m.Subject, err)
			}
		}
		// The header map is made here, its key already canonical: Set
		// canonicalises and nats.NewMsg makes a map Set then grows.
		nm := &nats.Msg{Subject: m.Subject, Data: data, Header: nats.Header{jetstream.MsgIDHeader: {m.MsgID}}}
		f, err := js.PublishMsgAsync(nm)
		if err != nil {
			return duplicates, fmt.Errorf("publish %s: %w", m.Subject, err)
		}
		futures = append(futures, f)
	}
	for i, f := range futures {
		select {
		case ack := <-f.Ok():
			if ack.Duplicate {
				duplicates++
			}
			if seq := msgs[i].Seq; seq != nil {
				*seq = ack.Sequence
			}
		case err := <-f.Err():
			return duplicates, fmt.Errorf("publish %s: %w", f.Msg().Subject, err)
		case <-ctx.Done():
			return duplicates, fmt.Errorf("publish: %w", ctx.Err())
		}
	}
	wake(js.Conn(), msgs)
	return duplicates, nil
}

// wake signals, once per org and kind, the tasks, job pages and sweeps among msgs
// (now stored) on WakeSubject. A signal that cannot be sent (the connection
// just closed) is not an error: the workers' discovery finds the messages
// within its interval.
func wake(nc *nats.Conn, msgs []Out) {
	var counts map[string]int // WakeSubject → messages
	for _, m := range msgs {
		subject := ""
		if org, ok := OrgOfTaskSubject(m.Subject); ok {
			subject = WakeSubject("tasks", org)
		} else if org, ok := OrgOfJobSubject(m.Subject); ok {
			subject = WakeSubject("jobs", org)
		} else if org, ok := OrgOfSweepSubject(m.Subject); ok {
			subject = WakeSubject("sweeps", org)
		} else {
			continue
		}
		if counts == nil {
			counts = map[string]int{}
		}
		counts[subject]++
	}
	for subject, n := range counts {
		_ = nc.Publish(subject, strconv.AppendInt(nil, int64(n), 10))
	}
}
