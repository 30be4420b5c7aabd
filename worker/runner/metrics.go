package runner

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/stevedore-dev/stevedore/schema"
)

// metrics are the runner's: claims, settlements and their durations, by
// stage (the handler's name).
type metrics struct {
	claimed     *prometheus.CounterVec
	settled     *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	claim       *prometheus.HistogramVec
	inflight    *prometheus.GaugeVec
	redelivered *prometheus.CounterVec
	dead        *prometheus.CounterVec
	// giveUpFailed: give-ups whose handler could not record its outcome.
	giveUpFailed *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		claimed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "stevedore_messages_claimed_total",
			Help: "Messages claimed, by stage (plan, task, track)."}, []string{"stage"}),
		settled: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "stevedore_messages_settled_total",
			Help: "Messages settled, by stage, outcome (ack, nak, dead, handed_back) and error class."}, []string{"stage", "outcome", "error_class"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "stevedore_message_duration_seconds",
			Help: "Time to process one message, by stage.", Buckets: prometheus.ExponentialBuckets(0.001, 4, 10)}, []string{"stage"}),
		claim: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "stevedore_claim_duration_seconds",
			Help:    "Round trip of a pull that claimed a message, by stage (plan, task): how long JetStream takes to hand out work.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 18)}, []string{"stage"}),
		inflight: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "stevedore_messages_inflight",
			Help: "Messages being processed, by stage."}, []string{"stage"}),
		redelivered: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "stevedore_messages_redelivered_total",
			Help: "Claims of messages delivered before (a worker crashed, timed out or handed them back), by stage."}, []string{"stage"}),
		dead: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "stevedore_dead_letters_total",
			Help: "Messages copied to DEAD, by error class."}, []string{"error_class"}),
		giveUpFailed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "stevedore_give_up_failures_total",
			Help: "Give-ups whose handler could not record its outcome (a failed object's status); the message is kept and retried, by stage."}, []string{"stage"}),
	}
	// Every known label value starts at zero: a series exists before its
	// first event, so rates, alerts and dashboards see it.
	for _, c := range schema.ErrorClasses {
		m.dead.WithLabelValues(string(c))
	}
	if reg != nil {
		reg.MustRegister(m.claimed, m.settled, m.duration, m.claim, m.inflight, m.redelivered, m.dead, m.giveUpFailed)
	}
	return m
}

// known starts a stage's series at zero.
func (m *metrics) known(stage string) {
	m.claimed.WithLabelValues(stage)
	m.redelivered.WithLabelValues(stage)
	m.inflight.WithLabelValues(stage)
	m.claim.WithLabelValues(stage)
	m.giveUpFailed.WithLabelValues(stage)
}
