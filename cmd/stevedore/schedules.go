package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/schema/registry"
	"github.com/stevedore-dev/stevedore/schema/schedules"
	"github.com/stevedore-dev/stevedore/worker/creds"
)

func runSchedule(ctx context.Context, args []string) error {
	return subcommands("schedule", args, map[string]func([]string) error{
		"set":   func(args []string) error { return scheduleSet(ctx, args) },
		"show":  func(args []string) error { return scheduleShow(ctx, args) },
		"list":  func(args []string) error { return scheduleList(ctx, args) },
		"clear": func(args []string) error { return scheduleClear(ctx, args) },
	}, "set --org ID --collection C --integration INT --bucket B [--prefix P] (--every 6h | --cron EXPR [--time-zone Z]) | show --org ID --collection C | list [--org ID] | clear --org ID --collection C")
}

// scheduleSet is `schedule set`: the collection syncs the bucket (or the
// prefix) through the integration on the schedule.
func scheduleSet(ctx context.Context, args []string) error {
	var org, collection, integration, bucket, prefix, region, every, cron, zone, processing *string
	var staleAfter *time.Duration
	var keep *bool
	return operatorCommand(ctx, "schedule set", args, func(f *flags) {
		org = f.Need("org", "organization ID")
		collection = f.Need("collection", "collection")
		integration = f.FlagSet.String("integration", "", "integration ID whose role reads the bucket")
		bucket = f.FlagSet.String("bucket", "", "bucket to sync")
		prefix = f.FlagSet.String("prefix", "", "sync only this prefix (a directory)")
		region = f.FlagSet.String("region", "us-east-1", "the bucket's region")
		every = f.FlagSet.String("every", "", "interval, e.g. 6h")
		cron = f.FlagSet.String("cron", "", "cron: six fields, seconds first (\"0 0 3 * * *\"), or @hourly, @daily, @weekly, @monthly")
		zone = f.FlagSet.String("time-zone", "", "IANA time zone of --cron (default UTC)")
		processing = f.FlagSet.String("processing-type", schema.ProcessingBasic, "basic or advanced")
		staleAfter = f.FlagSet.Duration("stale-after", 0, "stale (metric, alert) when the last successful sync is older; 0: 2 × the interval")
		keep = f.FlagSet.Bool("keep-missing", false, "additive syncs: do not delete what the bucket no longer holds")
	}, func(r *registry.Registry) (map[string]any, string, error) {
		in, err := r.Integration(ctx, *org, *integration)
		if err != nil {
			return nil, "", fmt.Errorf("integration %s: %w", *integration, err)
		}
		if err := creds.Allowed(in, *bucket, *prefix); err != nil {
			return nil, "", err
		}
		kind := schema.JobBucket
		if *prefix != "" {
			kind = schema.JobDirectory
		}
		job := &schema.Job{IntegrationID: in.ID, Kind: kind, Bucket: *bucket, Prefix: *prefix, Region: *region, SkipExisting: true,
			ReadSettings: schema.ReadSettings{ProcessingType: *processing}, DeleteMissing: !*keep}
		sc := &schedules.Schedule{Org: *org, Collection: *collection, Every: *every, Cron: *cron, TimeZone: *zone, Job: job}
		if *staleAfter > 0 {
			sc.StaleAfterSeconds, sc.StaleGiven = staleAfter.Seconds(), true
		}
		s, err := schedules.Open(ctx, r.JetStream(), nil)
		if err != nil {
			return nil, "", err
		}
		saved, err := s.Set(ctx, sc)
		var invalid *schedules.InvalidError
		if errors.As(err, &invalid) {
			return nil, "", usageError(err)
		}
		if err != nil {
			return nil, "", err
		}
		r.Audit(ctx, *org, cliActor, "schedule.set", "ok", *collection+" "+*every+*cron)
		return map[string]any{"schedule": saved.View()}, describeSchedule(saved.View()), nil
	})
}

// scheduleShow is `schedule show`.
func scheduleShow(ctx context.Context, args []string) error {
	var org, collection *string
	return operatorCommand(ctx, "schedule show", args, func(f *flags) {
		org = f.Need("org", "organization ID")
		collection = f.Need("collection", "collection")
	}, func(r *registry.Registry) (map[string]any, string, error) {
		s, err := schedules.Open(ctx, r.JetStream(), nil)
		if err != nil {
			return nil, "", err
		}
		sc, _, err := s.Get(ctx, *org, *collection)
		if err != nil {
			return nil, "", fmt.Errorf("schedule of %s/%s: %w", *org, *collection, err)
		}
		return map[string]any{"schedule": sc.View()}, describeSchedule(sc.View()), nil
	})
}

// scheduleList is `schedule list`: an org's schedules, or every org's.
func scheduleList(ctx context.Context, args []string) error {
	var org *string
	return operatorCommand(ctx, "schedule list", args, func(f *flags) {
		org = f.FlagSet.String("org", "", "organization ID (empty: every organization)")
	}, func(r *registry.Registry) (map[string]any, string, error) {
		s, err := schedules.Open(ctx, r.JetStream(), nil)
		if err != nil {
			return nil, "", err
		}
		list, err := s.List(ctx, *org)
		if err != nil {
			return nil, "", err
		}
		var b strings.Builder
		views := make([]*schedules.Schedule, len(list))
		now := time.Now()
		for i, sc := range list {
			views[i] = sc.View()
			age, stale := sc.Age(now)
			flag := ""
			if stale {
				flag = "  STALE"
			}
			fmt.Fprintf(&b, "%s/%s  %s  last successful sync %s ago%s\n", sc.Org, sc.Collection, sc.Every+sc.Cron, age.Round(time.Second), flag)
		}
		return map[string]any{"schedules": views}, b.String(), nil
	})
}

// scheduleClear is `schedule clear`.
func scheduleClear(ctx context.Context, args []string) error {
	var org, collection *string
	return operatorCommand(ctx, "schedule clear", args, func(f *flags) {
		org = f.Need("org", "organization ID")
		collection = f.Need("collection", "collection")
	}, func(r *registry.Registry) (map[string]any, string, error) {
		s, err := schedules.Open(ctx, r.JetStream(), nil)
		if err != nil {
			return nil, "", err
		}
		if err := s.Clear(ctx, *org, *collection); err != nil {
			return nil, "", fmt.Errorf("schedule of %s/%s: %w", *org, *collection, err)
		}
		r.Audit(ctx, *org, cliActor, "schedule.clear", "ok", *collection)
		return map[string]any{"cleared": true}, fmt.Sprintf("Schedule of %s/%s cleared\n", *org, *collection), nil
	})
}

func describeSchedule(sc *schedules.Schedule) string {
	var b strings.Builder
	when := "every " + sc.Every
	if sc.Cron != "" {
		when = "cron " + sc.Cron + " " + sc.TimeZone
	}
	fmt.Fprintf(&b, "Schedule of %s/%s: %s, sync s3://%s/%s (delete missing: %v); stale after %s\n", sc.Org, sc.Collection, when,
		sc.Job.Bucket, sc.Job.Prefix, sc.Job.DeleteMissing, time.Duration(sc.StaleAfterSeconds*float64(time.Second)))
	if sc.NextSyncAt != nil {
		fmt.Fprintf(&b, "  next sync %s\n", sc.NextSyncAt.Format(time.RFC3339))
	}
	if sc.LastSyncedAt != nil {
		fmt.Fprintf(&b, "  last successful sync %s\n", sc.LastSyncedAt.Format(time.RFC3339))
	}
	if l := sc.LastSync; l != nil {
		fmt.Fprintf(&b, "  last sync %s: %s, %d indexed, %d skipped, %d failed, %d deleted (sweep %s)\n", l.JobID, l.Status, l.FilesIndexed, l.FilesSkipped, l.FilesFailed, l.FilesDeleted, l.Sweep)
	}
	return b.String()
}
