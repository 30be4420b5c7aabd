package main

import (
	"context"
	"runtime"
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
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "stevedore_build_info",
		Help: "1, labelled with the build's version and Go version."}, []string{"version", "go_version"})
	build.WithLabelValues(version(), runtime.Version()).Set(1)
	connected := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "stevedore_nats_connected",
		Help: "1 while the process is connected to NATS, 0 while it is not (reconnecting)."}, func() float64 {
		if nc.IsConnected() {
			return 1
		}
		return 0
	})
	reg.MustRegister(build, connected, &backlog{js: js})
}

// backlog reports the work queues' pending messages and the age of the
// oldest one: what autoscaling and the "backlog growing" alert read.
type backlog struct{ js jetstream.JetStream }

var (
	backlogPending = prometheus.NewDesc("stevedore_queue_pending_messages", "Messages waiting in a work queue (JOBS, TASKS).", []string{"stream"}, nil)
	backlogAge     = prometheus.NewDesc("stevedore_queue_oldest_message_age_seconds", "Age of the oldest message in a work queue; 0 when empty.", []string{"stream"}, nil)
)

func (b *backlog) Describe(ch chan<- *prometheus.Desc) { ch <- backlogPending; ch <- backlogAge }

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
}
