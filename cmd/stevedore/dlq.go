package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/stevedore-dev/stevedore/schema"
)

// deadEntry is one DEAD message as operators see it.
type deadEntry struct {
	Seq    uint64             `json:"seq"`
	Letter *schema.DeadLetter `json:"dead_letter"`
}

// deadLetters reads DEAD (optionally one source stream's letters).
func deadLetters(ctx context.Context, js jetstream.JetStream, source string, limit int) ([]deadEntry, error) {
	filter := schema.DeadSubject("*")
	if source != "" {
		filter = schema.DeadSubject(source)
	}
	cons, err := js.OrderedConsumer(ctx, schema.StreamDead, jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}})
	if err != nil {
		return nil, err
	}
	var out []deadEntry
	for limit <= 0 || len(out) < limit {
		batch, err := cons.FetchNoWait(min(500, max(limit, 500)))
		if err != nil {
			return nil, err
		}
		n := 0
		for m := range batch.Messages() {
			n++
			md, _ := m.Metadata()
			dl, err := schema.DecodeDeadLetter(m.Data())
			if err != nil {
				continue
			}
			out = append(out, deadEntry{Seq: md.Sequence.Stream, Letter: dl})
			if limit > 0 && len(out) == limit {
				break
			}
		}
		if n == 0 {
			break
		}
	}
	return out, nil
}

// dlqCommand is the shape of the dlq commands: flags, a JetStream
// connection, one action, a result.
func dlqCommand(ctx context.Context, name string, args []string, define func(*flags), act func(jetstream.JetStream) (map[string]any, string, error)) error {
	url, asJSON, err := commandFlags(name, args, define)
	if err != nil {
		return err
	}
	nc, js, err := connect(ctx, url, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	defer nc.Close()
	v, human, err := act(js)
	if err != nil {
		return err
	}
	return printResult(asJSON, v, human)
}

func runDLQ(ctx context.Context, args []string) error {
	return subcommands("dlq", args, map[string]func([]string) error{
		"list":   func(args []string) error { return dlqList(ctx, args) },
		"show":   func(args []string) error { return dlqShow(ctx, args) },
		"replay": func(args []string) error { return dlqReplay(ctx, args) },
	}, "list [--stream S] [--limit N] | show --seq N | replay (--seq N | --all [--class C])")
}

// dlqList is `dlq list`.
func dlqList(ctx context.Context, args []string) error {
	var source *string
	var limit *int
	return dlqCommand(ctx, "dlq list", args, func(f *flags) {
		source = f.FlagSet.String("stream", "", "only letters from this source (JOBS, TASKS, SQS)")
		limit = f.FlagSet.Int("limit", 100, "at most this many (0: all)")
	}, func(js jetstream.JetStream) (map[string]any, string, error) {
		entries, err := deadLetters(ctx, js, *source, *limit)
		if err != nil {
			return nil, "", err
		}
		var b strings.Builder
		for _, e := range entries {
			reason := e.Letter.Reason
			if len(reason) > 100 {
				reason = reason[:100] + "…"
			}
			fmt.Fprintf(&b, "%6d  %s  %-5s  %-16s  deliveries %d  %s\n", e.Seq, e.Letter.At.Format(time.RFC3339), e.Letter.Stream, e.Letter.ErrorClass, e.Letter.Deliveries, reason)
		}
		if len(entries) == 0 {
			b.WriteString("DEAD is empty\n")
		}
		if entries == nil {
			entries = []deadEntry{} // JSON [] rather than null
		}
		return map[string]any{"dead_letters": entries}, b.String(), nil
	})
}

// dlqShow is `dlq show`.
func dlqShow(ctx context.Context, args []string) error {
	var seq *uint64
	return dlqCommand(ctx, "dlq show", args, func(f *flags) {
		seq = f.FlagSet.Uint64("seq", 0, "DEAD stream sequence (from dlq list)")
	}, func(js jetstream.JetStream) (map[string]any, string, error) {
		e, err := deadLetter(ctx, js, *seq)
		if err != nil {
			return nil, "", err
		}
		payload := string(e.Letter.Payload)
		if json.Valid(e.Letter.Payload) {
			var v any
			_ = json.Unmarshal(e.Letter.Payload, &v)
			b, _ := json.MarshalIndent(v, "  ", "  ")
			payload = string(b)
		}
		return map[string]any{"seq": e.Seq, "dead_letter": e.Letter},
			fmt.Sprintf("seq %d from %s %s (stream seq %d), %d deliveries, class %s, at %s\nreason: %s\npayload:\n  %s\n",
				e.Seq, e.Letter.Stream, e.Letter.Subject, e.Letter.Sequence, e.Letter.Deliveries, e.Letter.ErrorClass,
				e.Letter.At.Format(time.RFC3339), e.Letter.Reason, payload), nil
	})
}

// dlqReplay is `dlq replay`.
func dlqReplay(ctx context.Context, args []string) error {
	var seq *uint64
	var all *bool
	var class *string
	return dlqCommand(ctx, "dlq replay", args, func(f *flags) {
		seq = f.FlagSet.Uint64("seq", 0, "replay this DEAD message")
		all = f.FlagSet.Bool("all", false, "replay every replayable DEAD message")
		class = f.FlagSet.String("class", "", "with --all: only this error class")
	}, func(js jetstream.JetStream) (map[string]any, string, error) {
		var entries []deadEntry
		switch {
		case *seq > 0:
			e, err := deadLetter(ctx, js, *seq)
			if err != nil {
				return nil, "", err
			}
			entries = append(entries, *e)
		case *all:
			var err error
			if entries, err = deadLetters(ctx, js, "", 0); err != nil {
				return nil, "", err
			}
		default:
			return nil, "", errors.New("dlq replay: pass --seq N or --all")
		}
		replayed, skipped := []uint64{}, []string{}
		for _, e := range entries {
			if *class != "" && e.Letter.ErrorClass != *class {
				continue
			}
			if err := replay(ctx, js, e); err != nil {
				skipped = append(skipped, fmt.Sprintf("%d: %v", e.Seq, err))
				continue
			}
			replayed = append(replayed, e.Seq)
		}
		human := fmt.Sprintf("replayed %d dead letters %v\n", len(replayed), replayed)
		for _, s := range skipped {
			human += "not replayed " + s + "\n"
		}
		return map[string]any{"replayed": replayed, "not_replayed": skipped}, human, nil
	})
}

func deadLetter(ctx context.Context, js jetstream.JetStream, seq uint64) (*deadEntry, error) {
	s, err := js.Stream(ctx, schema.StreamDead)
	if err != nil {
		return nil, err
	}
	m, err := s.GetMsg(ctx, seq)
	if err != nil {
		return nil, fmt.Errorf("DEAD seq %d: %w", seq, err)
	}
	dl, err := schema.DecodeDeadLetter(m.Data)
	if err != nil {
		return nil, fmt.Errorf("DEAD seq %d: %w", seq, err)
	}
	return &deadEntry{Seq: seq, Letter: dl}, nil
}

// replay puts a dead letter's payload back on the work queue subject it came
// from, with a new Msg-Id, then removes it from DEAD. SQS letters hold raw
// notification bodies and are not replayable here.
func replay(ctx context.Context, js jetstream.JetStream, e deadEntry) error {
	if e.Letter.Stream != schema.StreamJobs && e.Letter.Stream != schema.StreamTasks {
		return fmt.Errorf("letters from %s are not replayable (send the payload back to its source)", e.Letter.Stream)
	}
	m := nats.NewMsg(e.Letter.Subject)
	m.Data = e.Letter.Payload
	m.Header.Set(jetstream.MsgIDHeader, schema.ReplayMsgID(e.Seq))
	if _, err := js.PublishMsg(ctx, m); err != nil {
		return err
	}
	s, err := js.Stream(ctx, schema.StreamDead)
	if err != nil {
		return err
	}
	return s.DeleteMsg(ctx, e.Seq)
}
