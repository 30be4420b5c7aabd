package main

import (
	"context"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/stevedore-dev/stevedore/schema"
)

// processMetrics registers what belongs to the process rather than to one
// component: build information, the NATS connection state and the backlog
// of the work queues (read from JetStream at scrape time).
func processMetrics(reg prometheus.Registerer, nc *nats.Conn, js jetstream.JetStream) {
	info := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "stevedore_build_info",
		Help: "1, labelled with the build's version, commit and Go version."}, []string{"version", "commit", "go_version"})
	b := build()
	info.WithLabelValues(b.Version, b.Commit, b.Go).Set(1)
	connected := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "stevedore_nats_connected",
		Help: "1 while the process is connected to NATS, 0 while it is not (reconnecting)."}, func() float64 {
		if nc.IsConnected() {
			return 1
		}
		return 0
	})
	reg.MustRegister(info, connected, &backlog{js: js})
}

// backlog reports the work queues' pending messages and the age of the
// oldest one: what autoscaling and the "backlog growing" alert read.
type backlog struct{ js jetstream.JetStream }

var (
	backlogPending = prometheus.NewDesc("stevedore_queue_pending_messages", "Messages waiting in a work queue (JOBS, TASKS).", []string{"stream"}, nil)
	backlogAge     = prometheus.NewDesc("stevedore_queue_oldest_message_age_seconds", "Age of the oldest message in a work queue; 0 when empty.", []string{"stream"}, nil)
	streamBytes    = prometheus.NewDesc("stevedore_stream_bytes", "Bytes stored in a stream (CHUNKS, EVENTS, DEAD, AUDIT).", []string{"stream"}, nil)
	streamMaxBytes = prometheus.NewDesc("stevedore_stream_max_bytes", "A stream's byte limit (absent when it has none).", []string{"stream"}, nil)
	trackerPending = prometheus.NewDesc("stevedore_tracker_pending_events", "EVENTS not yet folded into job status by the tracker (pending and unacknowledged).", nil, nil)
)

func (b *backlog) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{backlogPending, backlogAge, streamBytes, streamMaxBytes, trackerPending} {
		ch <- d
	}
}

func (b *backlog) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, name := range []string{schema.StreamJobs, schema.StreamTasks} {
		s, err := b.js.Stream(ctx, name)
		if err != nil {
			continue // unreachable now: the series is absent, which the "not ready" alert covers
		}
		info, err := s.Info(ctx)
		if err != nil {
			continue
		}
		ch <- prometheus.MustNewConstMetric(backlogPending, prometheus.GaugeValue, float64(info.State.Msgs), name)
		age := 0.0
		if info.State.Msgs > 0 {
			if m, err := s.GetMsg(ctx, info.State.FirstSeq); err == nil {
				age = time.Since(m.Time).Seconds()
			}
		}
		ch <- prometheus.MustNewConstMetric(backlogAge, prometheus.GaugeValue, age, name)
	}
	// Streams with limits: how full they are ("CHUNKS near its limit").
	for _, name := range []string{schema.StreamChunks, schema.StreamEvents, schema.StreamDead, schema.StreamAudit} {
		s, err := b.js.Stream(ctx, name)
		if err != nil {
			continue
		}
		info, err := s.Info(ctx)
		if err != nil {
			continue
		}
		ch <- prometheus.MustNewConstMetric(streamBytes, prometheus.GaugeValue, float64(info.State.Bytes), name)
		if info.Config.MaxBytes > 0 {
			ch <- prometheus.MustNewConstMetric(streamMaxBytes, prometheus.GaugeValue, float64(info.Config.MaxBytes), name)
		}
	}
	// The tracker's backlog ("tracker stalled").
	if c, err := b.js.Consumer(ctx, schema.StreamEvents, schema.ConsumerTracker); err == nil {
		if info, err := c.Info(ctx); err == nil {
			ch <- prometheus.MustNewConstMetric(trackerPending, prometheus.GaugeValue, float64(info.NumPending)+float64(info.NumAckPending))
		}
	}
}
