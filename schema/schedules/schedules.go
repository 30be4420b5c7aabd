// Package schedules owns collections' sync schedules. A schedule is two
// things: a JetStream message schedule on SCHEDULES (schema.ScheduleSubject),
// from which the server itself publishes a tick per interval
// (schema.TickSubject) — once per tick, from the stream's leader, across
// restarts and leader changes — and a record in stevedore_schedules, which
// is what the API shows: the definition, the next tick, and the last sync.
// The worker's tick handler (worker/tick) turns each tick into a sync job.
package schedules

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/stevedore-dev/stevedore/schema"
)

// ErrNotFound: the collection has no schedule.
var ErrNotFound = errors.New("no schedule")

// MinEvery is the shortest interval a schedule may have (the server's own
// minimum); the API asks for more (producer.MinScheduleEvery).
const MinEvery = time.Second

// cronStaleDefault is the stale threshold of a cron schedule that has not
// ticked yet, when none was given: two days (a daily schedule's 2×).
const cronStaleDefault = 48 * time.Hour

// Schedule is a collection's schedule as stored and shown.
type Schedule struct {
	Org        string `json:"org"`
	Collection string `json:"collection"`
	// Every is an interval (a Go duration: "6h", "30m"); Cron is a cron
	// expression of six fields, seconds first ("0 0 3 * * *"), or @hourly,
	// @daily, @weekly, @monthly, @yearly, in TimeZone (IANA; default UTC).
	// Exactly one of Every and Cron.
	Every    string `json:"every,omitempty"`
	Cron     string `json:"cron,omitempty"`
	TimeZone string `json:"time_zone,omitempty"`
	// StaleAfterSeconds: a schedule whose last successful sync is older is
	// stale (metric and alert). Default 2 × the interval (for cron, the
	// interval between its ticks once one was seen; 2 days before).
	StaleAfterSeconds float64 `json:"stale_after_seconds"`
	StaleGiven        bool    `json:"stale_after_given,omitempty"` // StaleAfterSeconds was set, not defaulted
	// Job is the sync each tick starts (its ID is the tick's).
	Job          *schema.Job `json:"job"`
	CreatedAt    time.Time   `json:"created_at"`
	UpdatedAt    time.Time   `json:"updated_at"`
	NextSyncAt   *time.Time  `json:"next_sync_at,omitempty"`
	LastTickAt   *time.Time  `json:"last_tick_at,omitempty"`
	LastJobID    string      `json:"last_job_id,omitempty"`
	LastSyncedAt *time.Time  `json:"last_synced_at,omitempty"` // the end of the last successful sync
	LastSync     *LastSync   `json:"last_sync,omitempty"`
}

// LastSync is how the last sync a schedule started ended.
type LastSync struct {
	JobID        string     `json:"job_id"`
	Status       string     `json:"status"`
	FilesIndexed int64      `json:"files_indexed"`
	FilesSkipped int64      `json:"files_skipped"`
	FilesFailed  int64      `json:"files_failed"`
	FilesDeleted int64      `json:"files_deleted"`
	Sweep        string     `json:"sweep,omitempty"` // the sweep's status
	CompletedAt  *time.Time `json:"completed_at,omitempty"`
}

// pattern is the schedule in the server's terms (Nats-Schedule).
func (sc *Schedule) pattern() (jetstream.PublishOpt, error) {
	switch {
	case sc.Every != "" && sc.Cron != "":
		return nil, errors.New("give every or cron, not both")
	case sc.Every != "":
		d, err := time.ParseDuration(sc.Every)
		if err != nil || d < MinEvery {
			return nil, fmt.Errorf("every %q: want a duration of at least %s, e.g. 6h", sc.Every, MinEvery)
		}
		if sc.TimeZone != "" {
			return nil, errors.New("time_zone applies to cron schedules")
		}
		return jetstream.WithScheduleEvery(d), nil
	case sc.Cron != "":
		if sc.TimeZone != "" {
			if _, err := time.LoadLocation(sc.TimeZone); err != nil {
				return nil, fmt.Errorf("time_zone %q: not an IANA time zone", sc.TimeZone)
			}
		}
		return jetstream.WithScheduleCron(sc.Cron), nil
	}
	return nil, errors.New("give every (e.g. 6h) or cron (e.g. 0 0 3 * * *)")
}

// interval is the schedule's interval when it is known: Every's, or for
// cron the gap between the last tick and the next.
func (sc *Schedule) interval() time.Duration {
	if d, err := time.ParseDuration(sc.Every); err == nil {
		return d
	}
	if sc.LastTickAt != nil && sc.NextSyncAt != nil {
		return sc.NextSyncAt.Sub(*sc.LastTickAt)
	}
	return 0
}

// staleAfter is the stale threshold in force.
func (sc *Schedule) staleAfter() time.Duration {
	if sc.StaleGiven {
		return time.Duration(sc.StaleAfterSeconds * float64(time.Second))
	}
	if d := sc.interval(); d > 0 {
		return 2 * d
	}
	return cronStaleDefault
}

// Age is how long the schedule has gone without a successful sync: since
// the last one, or since the schedule was made; stale past its threshold.
func (sc *Schedule) Age(now time.Time) (age time.Duration, stale bool) {
	since := sc.CreatedAt
	if sc.LastSyncedAt != nil {
		since = *sc.LastSyncedAt
	}
	age = now.Sub(since)
	return age, age > sc.staleAfter()
}

// Class buckets the schedule by its interval, for metrics: hourly (≤ 1h),
// daily (≤ 1d), weekly (≤ 7d) or monthly.
func (sc *Schedule) Class() string {
	d := sc.staleAfter() / 2
	switch {
	case d <= time.Hour:
		return "hourly"
	case d <= 24*time.Hour:
		return "daily"
	case d <= 7*24*time.Hour:
		return "weekly"
	}
	return "monthly"
}

// View is the schedule as the API shows it: the sealed secret its job
// names is not the caller's business.
func (sc *Schedule) View() *Schedule {
	v := *sc
	if sc.Job != nil {
		j := *sc.Job
		j.CredentialRef = ""
		v.Job = &j
	}
	v.StaleAfterSeconds = sc.staleAfter().Seconds()
	return &v
}

// Synced reports whether a sync job's end counts as a successful sync:
// completed (with or without failed files) and its sweep, if any, done.
func Synced(st *schema.JobStatus) bool {
	if st.Status != schema.JobStatusCompleted && st.Status != schema.JobStatusCompletedWithErrors {
		return false
	}
	return st.Sweep == nil || st.Sweep.Status == schema.SweepDone || st.Sweep.Status == schema.SweepSkipped
}

// key is the record's key.
func key(org, collection string) string { return org + "." + collection }

// orgOf is the org of a record key.
func orgOf(k string) string { org, _, _ := strings.Cut(k, "."); return org }
