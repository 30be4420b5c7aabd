package schema

import (
	"context"
	"errors"
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

// RequestTimeout bounds one JetStream request (a KV read or write) made
// under a long deadline (a task's, a sweep's): a request lost while a
// stream's leader changes gets no answer, and nats.go would wait out the
// whole deadline, holding the task with its heartbeats (found by the
// leader-loss test of schedules: a collection read waited 3 minutes). Past
// it the request fails as transient and the work is retried.
const RequestTimeout = 10 * time.Second

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

// Published is what PublishAll's acknowledgements said.
type Published struct {
	// Duplicates is how many messages the stream had stored before (by
	// Nats-Msg-Id): redone work that changed nothing. A fast batch's are
	// not counted; its acknowledgement does not say which were.
	Duplicates int
	// Unbatched is how many batches of tasks the server refused to take as
	// a batch (TASKS without batch publishing: a topology not yet updated;
	// a nats-server older than 2.14; TASKS at its limit of open batches);
	// they went one by one.
	Unbatched int
}

// PublishAll encodes and publishes msgs and waits until JetStream has
// acknowledged every one. A retried call republishes with the same IDs,
// which the stream's duplicate window turns into no-ops. An encoding
// failure wraps ErrPermanent.
//
// Tasks (TASKS allows batch publishing) that need no sequence back go as
// one fast-ingest batch when there are BatchMin to BatchMax of them (a page
// of a listing): the server acknowledges every few hundred messages instead
// of each one, which costs about a third less CPU a task
// (BenchmarkPublishAllPage). The rest are published asynchronously
// meanwhile.
func PublishAll(ctx context.Context, js jetstream.JetStream, msgs []Out) (p Published, err error) {
	batch, rest := splitBatch(msgs)
	futures, err := publishAsync(js, rest)
	if err != nil {
		return p, err
	}
	if len(batch) > 0 {
		encoded, err := encodeAll(batch)
		if err != nil {
			return p, err
		}
		err = publishBatch(ctx, js, encoded)
		if errors.Is(err, errBatchRefused) {
			p.Unbatched++
			more, err := publishEncoded(js, encoded)
			if err != nil {
				return p, err
			}
			futures, rest = append(futures, more...), append(rest, batch...)
		} else if err != nil {
			return p, err
		}
	}
	for i, f := range futures {
		select {
		case ack := <-f.Ok():
			if ack.Duplicate {
				p.Duplicates++
			}
			if seq := rest[i].Seq; seq != nil {
				*seq = ack.Sequence
			}
		case err := <-f.Err():
			return p, fmt.Errorf("publish %s: %w", f.Msg().Subject, err)
		case <-ctx.Done():
			return p, fmt.Errorf("publish: %w", ctx.Err())
		}
	}
	wake(js.Conn(), msgs)
	return p, nil
}

// publishAsync encodes and publishes msgs without waiting; the futures
// are in msgs' order.
func publishAsync(js jetstream.JetStream, msgs []Out) ([]jetstream.PubAckFuture, error) {
	encoded, err := encodeAll(msgs)
	if err != nil {
		return nil, err
	}
	return publishEncoded(js, encoded)
}

// publishEncoded publishes msgs without waiting; the futures are in msgs'
// order.
func publishEncoded(js jetstream.JetStream, msgs []*nats.Msg) ([]jetstream.PubAckFuture, error) {
	futures := make([]jetstream.PubAckFuture, len(msgs))
	for i, m := range msgs {
		var err error
		if futures[i], err = js.PublishMsgAsync(m); err != nil {
			return nil, fmt.Errorf("publish %s: %w", m.Subject, err)
		}
	}
	return futures, nil
}

// encodeAll is msgs encoded (natsMsg), in order.
func encodeAll(msgs []Out) ([]*nats.Msg, error) {
	encoded := make([]*nats.Msg, len(msgs))
	for i, m := range msgs {
		var err error
		if encoded[i], err = natsMsg(m); err != nil {
			return nil, err
		}
	}
	return encoded, nil
}

// natsMsg is m encoded, with its Nats-Msg-Id. The header map is made here,
// its key already canonical: Set canonicalises and nats.NewMsg makes a map
// Set then grows.
func natsMsg(m Out) (*nats.Msg, error) {
	data := m.Data
	if data == nil {
		var err error
		if data, err = Encode(m.Msg); err != nil {
			return nil, fmt.Errorf("%w: encode %s: %v", ErrPermanent, m.Subject, err)
		}
	}
	return &nats.Msg{Subject: m.Subject, Data: data, Header: nats.Header{jetstream.MsgIDHeader: {m.MsgID}}}, nil
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
