package schema

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/synadia-io/orbit.go/jetstreamext"
)

// BatchMin is the fewest tasks PublishAll sends as one fast-ingest batch:
// below it the batch's first round trip costs more than the
// acknowledgements it saves.
const BatchMin = 32

// BatchMax is the most tasks PublishAll sends as one fast batch; more go
// one by one. A listing page is at most 1,000.
const BatchMax = 4096

// batchFlow is how many messages the server is asked to acknowledge at once
// (it asks for fewer while many batches are open).
const batchFlow = 250

// JetStream's refusals to start a fast batch: batch publishing is off on
// the stream (JSBatchPublishDisabledErr), or the stream has as many batches
// open as the server allows (JSBatchPublishTooManyInflight; 1,000 a stream
// by default).
const (
	jsErrFastBatchNotEnabled = 10205
	jsErrFastBatchTooMany    = 10211
)

// errBatchRefused is publishBatch's answer when the server will not start
// a fast batch; PublishAll then publishes the tasks one by one.
var errBatchRefused = errors.New("the server refused a fast batch")

// splitBatch picks out of msgs the tasks a fast batch can carry (none that
// want their stream sequence back), if there are at least BatchMin.
func splitBatch(msgs []Out) (batch, rest []Out) {
	n := 0
	for _, m := range msgs {
		if batchable(m) {
			n++
		}
	}
	if n < BatchMin || n > BatchMax {
		return nil, msgs
	}
	batch, rest = make([]Out, 0, n), make([]Out, 0, len(msgs)-n)
	for _, m := range msgs {
		if batchable(m) {
			batch = append(batch, m)
		} else {
			rest = append(rest, m)
		}
	}
	return batch, rest
}

func batchable(m Out) bool { return m.Seq == nil && strings.HasPrefix(m.Subject, taskPrefix) }

// publishBatch publishes msgs (tasks) as one fast-ingest batch and returns once
// the server has stored (or found duplicate) every message. Any message the
// server refuses (TASKS full, a gap) ends the batch; the error then carries
// the server's, so backpressure is recognised as it is for one publish. If
// the server will not start a batch at all, it returns errBatchRefused.
func publishBatch(ctx context.Context, js jetstream.JetStream, msgs []*nats.Msg) error {
	var mu sync.Mutex
	var reported error // the first error the server sent on the batch's control channel
	// As many acknowledgements may be outstanding as there are messages, so
	// adding never waits for one: a publisher waiting for a flow
	// acknowledgement is not woken when the server ends the batch early (a
	// full stream), and would wait out the whole timeout. The batch is
	// bounded (BatchMax), as async publishes are, so the server's queue is.
	fp, err := jetstreamext.NewFastPublisher(js,
		jetstreamext.FastPublishFlowControl{Flow: batchFlow, MaxOutstandingAcks: uint16(len(msgs)), AckTimeout: PublishAckTimeout},
		jetstreamext.WithFastPublisherErrorHandler(func(err error) {
			mu.Lock()
			defer mu.Unlock()
			if reported == nil {
				reported = err
			}
		}))
	if err != nil {
		return fmt.Errorf("publish a batch of %d tasks: %w", len(msgs), err)
	}
	failed := func(err error) error {
		mu.Lock()
		defer mu.Unlock()
		if reported != nil {
			return fmt.Errorf("publish a batch of %d tasks: %w (%v)", len(msgs), reported, err)
		}
		return fmt.Errorf("publish a batch of %d tasks: %w", len(msgs), err)
	}
	last := len(msgs) - 1
	for i, m := range msgs[:last] {
		if _, err := fp.AddMsg(m); err != nil {
			if i == 0 && refusedBatch(err) {
				return fmt.Errorf("%w: %v", errBatchRefused, err)
			}
			return failed(err)
		}
	}
	ack, err := fp.CommitMsg(ctx, msgs[last])
	if err != nil {
		return failed(err)
	}
	if ack.BatchSize != uint64(len(msgs)) {
		return failed(fmt.Errorf("the server ended the batch after %d", ack.BatchSize))
	}
	return nil
}

// refusedBatch reports whether the first message of a fast batch failed
// because the server will not start one: batch publishing is off on the
// stream, the stream has too many batches open, or the server predates
// batches and answered with a plain acknowledgement (the message is then
// stored; its copy is a duplicate).
func refusedBatch(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && (apiErr.ErrorCode == jsErrFastBatchNotEnabled || apiErr.ErrorCode == jsErrFastBatchTooMany) {
		return true
	}
	return errors.Is(err, jetstreamext.ErrInvalidBatchAck)
}
