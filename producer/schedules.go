package producer

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/schema/schedules"
)

// MinScheduleEvery is the shortest interval a schedule set over the API
// may have: a sync lists the whole scope, so more often is a cost, not
// freshness (S3 notifications are the way to minutes).
const MinScheduleEvery = 15 * time.Minute

// scheduleRequest is PUT /v2/collections/{name}/schedule: what to sync (an
// index request of a bucket, or of a directory with directory_path) and
// when.
type scheduleRequest struct {
	indexRequest
	Every      string `json:"every"`
	Cron       string `json:"cron"`
	TimeZone   string `json:"time_zone"`
	StaleAfter string `json:"stale_after"`
}

// indexRequestOf is the index request inside a request body type.
func indexRequestOf(v any) *indexRequest {
	switch r := v.(type) {
	case *indexRequest:
		return r
	case *scheduleRequest:
		return &r.indexRequest
	}
	panic(fmt.Sprintf("producer: no index request in %T", v))
}

func scheduleNotFound(collection string) error {
	return &apiError{http.StatusNotFound, "schedule_not_found", "collection " + collection + " has no schedule", "set one: PUT /v2/collections/" + collection + "/schedule"}
}

// setSchedule is PUT /v2/collections/{name}/schedule: the collection syncs
// its bucket or directory on the schedule (replacing one it had; the last
// sync's record stays). The request is checked as an index request is.
func (a *API) setSchedule(w http.ResponseWriter, r *http.Request) error {
	var req scheduleRequest
	org, job, _, _, err := a.jobRequest(w, r, &req, func() schema.JobKind {
		if req.DirectoryPath != "" {
			return schema.JobDirectory
		}
		return schema.JobBucket
	})
	if err != nil {
		return err
	}
	if req.FileURI != "" {
		return badRequest("invalid_option", "a schedule syncs a bucket or a directory, not a file", "drop file_uri; give directory_path for a prefix")
	}
	if err := a.ensureCollection(r.Context(), org.ID, job.Collection); err != nil {
		return err
	}
	sc := &schedules.Schedule{Org: org.ID, Collection: job.Collection, Every: req.Every, Cron: req.Cron, TimeZone: req.TimeZone, Job: job}
	if err := checkScheduleTimes(sc, req.StaleAfter); err != nil {
		return err
	}
	saved, err := a.schedules.Set(r.Context(), sc)
	var invalid *schedules.InvalidError
	if errors.As(err, &invalid) {
		return badRequest("invalid_schedule", invalid.Err.Error(), `every: a duration ("6h"); or cron: six fields, seconds first ("0 0 3 * * *"), or @hourly, @daily, @weekly, @monthly, with time_zone (IANA)`)
	}
	if err != nil {
		return err
	}
	a.audit(r.Context(), org.ID, "schedule.set", "ok", job.Collection+" "+req.Every+req.Cron)
	writeJSON(w, http.StatusOK, saved.View())
	return nil
}

// checkScheduleTimes checks the API's own bounds of a schedule: every at
// least MinScheduleEvery, stale_after a duration of at least the interval.
func checkScheduleTimes(sc *schedules.Schedule, staleAfter string) error {
	if sc.Every != "" {
		d, err := time.ParseDuration(sc.Every)
		if err != nil || d < MinScheduleEvery {
			return badRequest("invalid_schedule", fmt.Sprintf("every %q: want a duration of at least %s", sc.Every, MinScheduleEvery),
				"for changes within minutes, set up S3 notifications")
		}
	}
	if staleAfter == "" {
		return nil
	}
	d, err := time.ParseDuration(staleAfter)
	if every, _ := time.ParseDuration(sc.Every); err != nil || d <= 0 || d < every {
		return badRequest("invalid_stale_after", fmt.Sprintf("stale_after %q: want a duration of at least the interval", staleAfter), `e.g. "12h" for every 6h`)
	}
	sc.StaleAfterSeconds, sc.StaleGiven = d.Seconds(), true
	return nil
}

// getSchedule is GET /v2/collections/{name}/schedule.
func (a *API) getSchedule(w http.ResponseWriter, r *http.Request) error {
	org, err := a.authenticate(r)
	if err != nil {
		return err
	}
	collection := r.PathValue("name")
	sc, _, err := a.schedules.Get(r.Context(), org.ID, collection)
	if errors.Is(err, schedules.ErrNotFound) || !schema.ValidID(collection) {
		return scheduleNotFound(collection)
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, sc.View())
	return nil
}

// clearSchedule is DELETE /v2/collections/{name}/schedule: no more syncs
// start (one running finishes).
func (a *API) clearSchedule(w http.ResponseWriter, r *http.Request) error {
	org, err := a.authenticate(r)
	if err != nil {
		return err
	}
	collection := r.PathValue("name")
	if !schema.ValidID(collection) {
		return scheduleNotFound(collection)
	}
	err = a.schedules.Clear(r.Context(), org.ID, collection)
	if errors.Is(err, schedules.ErrNotFound) {
		return scheduleNotFound(collection)
	}
	if err != nil {
		return err
	}
	a.audit(r.Context(), org.ID, "schedule.clear", "ok", collection)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// listSchedules is GET /v2/schedules: the org's schedules.
func (a *API) listSchedules(w http.ResponseWriter, r *http.Request) error {
	org, err := a.authenticate(r)
	if err != nil {
		return err
	}
	list, err := a.schedules.List(r.Context(), org.ID)
	if err != nil {
		return err
	}
	out := make([]*schedules.Schedule, len(list))
	for i, sc := range list {
		out[i] = sc.View()
	}
	writeJSON(w, http.StatusOK, map[string]any{"schedules": out})
	return nil
}

// scheduleClasses are the values of the class label (schedules.Schedule.Class).
var scheduleClasses = []string{"hourly", "daily", "weekly", "monthly"}

// staleness exports, at each scrape, how the schedules keep up: how many
// there are, the age of the oldest successful sync, and how many are
// stale (no successful sync within their threshold), by class. Every
// producer exports the same numbers: alert on max, not sum.
type staleness struct {
	store                *schedules.Store
	now                  func() time.Time
	count, oldest, stale *prometheus.Desc
}

func newStaleness(store *schedules.Store, now func() time.Time) *staleness {
	return &staleness{store: store, now: now,
		count: prometheus.NewDesc("stevedore_schedules", "Collections with a sync schedule, by class (hourly, daily, weekly, monthly: the interval).", []string{"class"}, nil),
		oldest: prometheus.NewDesc("stevedore_schedule_oldest_sync_age_seconds",
			"The longest any schedule of the class has gone without a successful sync (since it was set, if it never had one).", []string{"class"}, nil),
		stale: prometheus.NewDesc("stevedore_schedules_stale",
			"Schedules of the class whose last successful sync is older than their stale threshold (default 2 × the interval).", []string{"class"}, nil)}
}

func (s *staleness) Describe(ch chan<- *prometheus.Desc) {
	ch <- s.count
	ch <- s.oldest
	ch <- s.stale
}

func (s *staleness) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	list, err := s.store.List(ctx, "")
	if err != nil {
		// A scrape that cannot read the schedules fails loudly, rather
		// than reporting none stale.
		ch <- prometheus.NewInvalidMetric(s.stale, err)
		return
	}
	count, oldest, stale := map[string]float64{}, map[string]float64{}, map[string]float64{}
	now := s.now()
	for _, sc := range list {
		class := sc.Class()
		age, isStale := sc.Age(now)
		count[class]++
		oldest[class] = max(oldest[class], age.Seconds())
		if isStale {
			stale[class]++
		}
	}
	for _, c := range scheduleClasses {
		ch <- prometheus.MustNewConstMetric(s.count, prometheus.GaugeValue, count[c], c)
		ch <- prometheus.MustNewConstMetric(s.oldest, prometheus.GaugeValue, oldest[c], c)
		ch <- prometheus.MustNewConstMetric(s.stale, prometheus.GaugeValue, stale[c], c)
	}
}
