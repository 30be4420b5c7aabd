package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/schema/jobs"
	"github.com/stevedore-dev/stevedore/schema/registry"
)

func runJob(ctx context.Context, args []string) error {
	return subcommands("job", args, map[string]func([]string) error{
		"list":   func(args []string) error { return jobList(ctx, args) },
		"show":   func(args []string) error { return jobShow(ctx, args) },
		"cancel": func(args []string) error { return jobCancel(ctx, args) },
		"retry":  func(args []string) error { return jobRetry(ctx, args) },
	}, "list --org ID [--collection C] [--status S] [--limit N] [--cursor C] | show --org ID --id JOB [--wait] | cancel --org ID --id JOB | retry --org ID --id JOB")
}

// jobList is `job list`.
func jobList(ctx context.Context, args []string) error {
	var org, collection, status, cursor *string
	var limit *int
	return operatorCommand(ctx, "job list", args, func(f *flags) {
		org = f.Need("org", "organization ID")
		collection = f.FlagSet.String("collection", "", "only this collection's jobs")
		status = f.FlagSet.String("status", "", "only jobs with this status")
		limit = f.FlagSet.Int("limit", 20, "jobs per page (1-100)")
		cursor = f.FlagSet.String("cursor", "", "next_cursor of the previous page")
	}, func(r *registry.Registry) (map[string]any, string, error) {
		j, err := jobs.Open(ctx, r.JetStream(), nil)
		if err != nil {
			return nil, "", err
		}
		page, err := j.List(ctx, *org, jobs.Filter{Collection: *collection, Status: *status, Limit: *limit, Cursor: *cursor})
		if errors.Is(err, jobs.ErrBadStatus) || errors.Is(err, jobs.ErrBadCursor) {
			return nil, "", usageError(fmt.Errorf("job list: %w", err))
		}
		if err != nil {
			return nil, "", err
		}
		var b strings.Builder
		for _, v := range page.Jobs {
			fmt.Fprintf(&b, "%s  %-22s %-12s %s  %d/%d files, %d failed\n", v.JobID, v.Status, v.Collection, v.CreatedAt.Format(time.RFC3339),
				v.FilesIndexed+v.FilesSkipped+v.FilesFailed+v.FilesDeleted, v.FilesTotal, v.FilesFailed)
		}
		if page.NextCursor != "" {
			fmt.Fprintf(&b, "more: --cursor %s\n", page.NextCursor)
		}
		return map[string]any{"jobs": page.Jobs, "next_cursor": page.NextCursor}, b.String(), nil
	})
}

// jobShow is `job show`.
func jobShow(ctx context.Context, args []string) error {
	var org, id *string
	var wait *bool
	var timeout *time.Duration
	return operatorCommand(ctx, "job show", args, func(f *flags) {
		org = f.Need("org", "organization ID")
		id = f.Need("id", "job ID")
		wait = f.FlagSet.Bool("wait", false, "follow the job until it is final (a progress bar on a terminal, a line per change otherwise); exit 3 if it ends failed or cancelled")
		timeout = f.FlagSet.Duration("timeout", 0, "with --wait: give up after this long (exit 1); 0 waits for ever")
	}, func(r *registry.Registry) (map[string]any, string, error) {
		j, err := jobs.Open(ctx, r.JetStream(), nil)
		if err != nil {
			return nil, "", err
		}
		wctx := ctx
		if *timeout > 0 {
			var cancel context.CancelFunc
			wctx, cancel = context.WithTimeout(ctx, *timeout)
			defer cancel()
		}
		// Progress goes to stderr, so --json output stays one object.
		st, err := showJob(wctx, j, *org, *id, *wait, progressWriter())
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			return nil, "", fmt.Errorf("job %s is still %s after --timeout %s: %w", *id, st.Status, *timeout, context.DeadlineExceeded)
		}
		if err != nil {
			return nil, "", err
		}
		v := st.View(time.Now())
		if *wait && (st.Status == schema.JobStatusFailed || st.Status == schema.JobStatusCancelled) {
			err = &exitError{code: exitJobUnsuccessful}
		}
		return map[string]any{"job": v}, describeJob(v), err
	})
}

// jobCancel is `job cancel`.
func jobCancel(ctx context.Context, args []string) error {
	var org, id *string
	return operatorCommand(ctx, "job cancel", args, func(f *flags) {
		org = f.Need("org", "organization ID")
		id = f.Need("id", "job ID")
	}, func(r *registry.Registry) (map[string]any, string, error) {
		j, err := jobs.Open(ctx, r.JetStream(), nil)
		if err != nil {
			return nil, "", err
		}
		st, err := j.Cancel(ctx, *org, *id)
		if err != nil {
			return nil, "", fmt.Errorf("cancel %s: %w", *id, err)
		}
		r.Audit(ctx, *org, cliActor, "job.cancel", "ok", *id)
		return map[string]any{"job": st.View(time.Now())}, fmt.Sprintf("Job %s %s\n", st.JobID, st.Status), nil
	})
}

// jobRetry is `job retry`: a retry job re-running what the job failed on.
func jobRetry(ctx context.Context, args []string) error {
	var org, id *string
	return operatorCommand(ctx, "job retry", args, func(f *flags) {
		org = f.Need("org", "organization ID")
		id = f.Need("id", "job ID (final)")
	}, func(r *registry.Registry) (map[string]any, string, error) {
		j, err := jobs.Open(ctx, r.JetStream(), nil)
		if err != nil {
			return nil, "", err
		}
		prev, _, err := j.Get(ctx, *org, *id)
		if err != nil {
			return nil, "", fmt.Errorf("job %s: %w", *id, err)
		}
		if !prev.Final() {
			return nil, "", fmt.Errorf("job %s is still %s: retry it once it is final", *id, prev.Status)
		}
		st, err := j.Retry(ctx, prev, jobs.NewID())
		if err != nil {
			return nil, "", err
		}
		r.Audit(ctx, *org, cliActor, "job.retry", "ok", *id+" → "+st.JobID)
		return map[string]any{"job_id": st.JobID, "retry_of": *id}, fmt.Sprintf("Retrying what job %s failed on: job %s\n", *id, st.JobID), nil
	})
}

// progress is where show --wait draws; tty selects a redrawn bar over
// one line per change.
type progress struct {
	w   io.Writer
	tty bool
}

func progressWriter() progress {
	fi, err := os.Stderr.Stat()
	return progress{w: os.Stderr, tty: err == nil && fi.Mode()&os.ModeCharDevice != 0}
}

// showJob reads a job and, with wait, follows it until it is final, drawing
// its progress on p: a bar on a terminal, a line per change otherwise.
func showJob(ctx context.Context, j *jobs.Store, org, id string, wait bool, p progress) (*schema.JobStatus, error) {
	last := ""
	var bar *progressbar.ProgressBar
	for {
		st, _, err := j.Get(ctx, org, id)
		if errors.Is(err, jobs.ErrNotFound) {
			return nil, fmt.Errorf("job %s: not found in %s: %w", id, org, err)
		}
		if err != nil {
			return nil, err
		}
		if wait && p.tty {
			bar = drawBar(bar, p.w, st, time.Now())
		}
		if !wait || st.Final() {
			if bar != nil {
				_ = bar.Finish()
				fmt.Fprintln(p.w)
			}
			return st, nil
		}
		if !p.tty {
			if line := progressLine(st.View(time.Now())); line != last {
				fmt.Fprintln(p.w, line)
				last = line
			}
		}
		select {
		case <-ctx.Done():
			return st, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// drawBar brings the terminal's bar (schollz/progressbar, cut to the
// terminal's width) up to st, making it when needed: a spinner counting
// files while the bucket is still being listed ("listing…"), then a bar
// over the files the listing found. The rate and estimate are the job's own
// (since it started, as the API computes them), not the bar's, which would
// count the files done before the command started as done at once.
func drawBar(bar *progressbar.ProgressBar, w io.Writer, st *schema.JobStatus, now time.Time) *progressbar.ProgressBar {
	planned := st.Planned() || st.Final()
	if bar == nil || planned && bar.GetMax64() != max(st.FilesTotal, 1) {
		size := int64(-1)
		if planned {
			size = max(st.FilesTotal, 1)
		}
		bar = progressbar.NewOptions64(size, progressbar.OptionSetWriter(w), progressbar.OptionSetWidth(30),
			progressbar.OptionShowCount(), progressbar.OptionSpinnerType(14), progressbar.OptionSetPredictTime(false))
	}
	what := "listing…"
	if planned {
		what = st.Status
	}
	if rate := st.Rate(now); rate > 0 {
		what += fmt.Sprintf(" %.1f files/s", rate)
	}
	if v := st.View(now); planned && v.EstimatedTimeRemainingSeconds != nil && !st.Final() {
		what += fmt.Sprintf(", %s left", (time.Duration(*v.EstimatedTimeRemainingSeconds) * time.Second).Round(time.Second))
	}
	bar.Describe(what)
	_ = bar.Set64(st.Settled())
	return bar
}

// progressLine is one line of progress where there is no terminal: counts,
// and the estimate once the listing is planned ("listing…" before).
func progressLine(v schema.JobView) string {
	if !v.Planned() {
		return fmt.Sprintf("listing…  %s: %d files so far (%d indexed, %d skipped, %d failed)", v.Status, v.FilesTotal, v.FilesIndexed, v.FilesSkipped, v.FilesFailed)
	}
	eta := ""
	if v.EstimatedTimeRemainingSeconds != nil {
		eta = fmt.Sprintf(", about %s left", (time.Duration(*v.EstimatedTimeRemainingSeconds) * time.Second).Round(time.Second))
	}
	return fmt.Sprintf("%3.0f%%  %s: %d/%d files (%d indexed, %d skipped, %d failed)%s",
		v.Progress*100, v.Status, v.Settled(), v.FilesTotal, v.FilesIndexed, v.FilesSkipped, v.FilesFailed, eta)
}

func describeJob(v schema.JobView) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Job %s: %s\n  collection %s, s3://%s/%s%s\n  files: %d total, %d indexed, %d skipped, %d failed, %d deleted; chunks %d, tokens %d\n",
		v.JobID, v.Status, v.Collection, v.Bucket, v.Prefix, v.Key, v.FilesTotal, v.FilesIndexed, v.FilesSkipped, v.FilesFailed, v.FilesDeleted, v.ChunksProcessed, v.TokensUsed)
	if w := v.Sweep; w != nil {
		fmt.Fprintf(&b, "  sweep: %s; %d held, %d missing from the listing, %d deleted, %d kept, %d unconfirmed\n",
			w.Status, w.Held, w.Candidates, w.Deleted, w.Kept, w.Unconfirmed)
		if w.Reason != "" {
			fmt.Fprintf(&b, "  sweep: %s\n", w.Reason)
		}
	}
	if v.Error != nil {
		fmt.Fprintf(&b, "  error: %s (%s)\n  hint:  %s\n", v.Error.Reason, v.Error.ErrorCode, v.Error.Hint)
	}
	for _, e := range v.Errors {
		fmt.Fprintf(&b, "  %s %s: %s\n", e.Outcome, e.Key, e.Reason)
	}
	return b.String()
}
