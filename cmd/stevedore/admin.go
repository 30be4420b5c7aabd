package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/stevedore-dev/stevedore/schema/registry"
)

func orgView(o *registry.Org) map[string]any {
	v := map[string]any{"org_id": o.ID, "name": o.Name, "external_id": o.ExternalID, "created_at": o.CreatedAt,
		"external_id_rotated_at": o.ExternalIDRotatedAt, "disabled": o.DisabledAt != nil}
	if o.DisabledAt != nil {
		v["disabled_at"] = o.DisabledAt
	}
	return v
}

func orgLine(o *registry.Org) string {
	state := "enabled"
	if o.DisabledAt != nil {
		state = "DISABLED since " + o.DisabledAt.Format(time.RFC3339)
	}
	return fmt.Sprintf("%s  %-30s %s  created %s\n", o.ID, o.Name, state, o.CreatedAt.Format(time.RFC3339))
}

// orgSetDisabled is `org disable` (with --delete-data: offboarding) or
// `org enable`.
func orgSetDisabled(ctx context.Context, name string, disabled bool) func([]string) error {
	return func(args []string) error {
		var id *string
		deleteData := new(bool)
		return operatorCommand(ctx, "org "+name, args, func(f *flags) {
			id = f.Need("org", "organization ID")
			if disabled {
				deleteData = f.FlagSet.Bool("delete-data", false, "offboard: also delete every collection of the org with its chunks (delete_collection jobs; AUDIT is kept)")
			}
		}, func(r *registry.Registry) (map[string]any, string, error) {
			org, err := r.SetDisabled(ctx, cliActor, *id, disabled)
			if err != nil {
				return nil, "", err
			}
			v, human := orgView(org), orgLine(org)
			if *deleteData {
				jobs, err := offboard(ctx, r, org.ID)
				if err != nil {
					return nil, "", err
				}
				v["delete_jobs"] = jobs
				human += fmt.Sprintf("Deleting %d collections: jobs %s\n", len(jobs), strings.Join(jobs, " "))
			}
			return v, human, nil
		})
	}
}

// orgAdmin are the org verbs besides create and rotate-external-id.
func orgAdmin(ctx context.Context) map[string]func([]string) error {
	return map[string]func([]string) error{
		"list": func(args []string) error {
			return operatorCommand(ctx, "org list", args, func(*flags) {}, func(r *registry.Registry) (map[string]any, string, error) {
				orgs, err := r.Orgs(ctx)
				if err != nil {
					return nil, "", err
				}
				views := make([]map[string]any, 0, len(orgs))
				var b strings.Builder
				for _, o := range orgs {
					views = append(views, orgView(o))
					b.WriteString(orgLine(o))
				}
				return map[string]any{"orgs": views}, b.String(), nil
			})
		},
		"show": func(args []string) error {
			var id *string
			return operatorCommand(ctx, "org show", args, func(f *flags) {
				id = f.Need("org", "organization ID")
			}, func(r *registry.Registry) (map[string]any, string, error) {
				org, err := r.Org(ctx, *id)
				if err != nil {
					return nil, "", err
				}
				keys, err := r.APIKeys(ctx, org.ID)
				if err != nil {
					return nil, "", err
				}
				v := orgView(org)
				v["api_keys"] = keys
				return v, orgLine(org) + fmt.Sprintf("  external_id: %s\n  api keys: %d\n", org.ExternalID, len(keys)), nil
			})
		},
		"disable": orgSetDisabled(ctx, "disable", true),
		"enable":  orgSetDisabled(ctx, "enable", false),
	}
}

func runAPIKey(ctx context.Context, args []string) error {
	orgFlag := func(f *flags) *string { return f.Need("org", "organization ID") }
	return subcommands("apikey", args, map[string]func([]string) error{
		"create": func(args []string) error {
			var org *string
			return operatorCommand(ctx, "apikey create", args, func(f *flags) { org = orgFlag(f) }, func(r *registry.Registry) (map[string]any, string, error) {
				k, key, err := r.CreateAPIKey(ctx, cliActor, *org)
				if err != nil {
					return nil, "", err
				}
				return map[string]any{"key_id": k.ID, "org_id": k.Org, "api_key": key.Reveal(), "created_at": k.CreatedAt},
					fmt.Sprintf("API key %s for %s:\n  api_key: %s   (shown once; store it now)\n", k.ID, k.Org, key.Reveal()), nil
			})
		},
		"list": func(args []string) error {
			var org *string
			return operatorCommand(ctx, "apikey list", args, func(f *flags) { org = orgFlag(f) }, func(r *registry.Registry) (map[string]any, string, error) {
				keys, err := r.APIKeys(ctx, *org)
				if err != nil {
					return nil, "", err
				}
				var b strings.Builder
				for _, k := range keys {
					used := "never used"
					if k.LastUsedAt != nil {
						used = "last used " + k.LastUsedAt.Format(time.RFC3339)
					}
					fmt.Fprintf(&b, "%s  created %s  %s\n", k.ID, k.CreatedAt.Format(time.RFC3339), used)
				}
				if keys == nil {
					keys = []*registry.APIKey{}
				}
				return map[string]any{"api_keys": keys}, b.String(), nil
			})
		},
		"revoke": func(args []string) error {
			var org, id *string
			return operatorCommand(ctx, "apikey revoke", args, func(f *flags) {
				org = orgFlag(f)
				id = f.Need("id", "API key ID (key_…)")
			}, func(r *registry.Registry) (map[string]any, string, error) {
				if err := r.RevokeAPIKey(ctx, cliActor, *org, *id); err != nil {
					return nil, "", err
				}
				return map[string]any{"key_id": *id, "revoked": true}, "API key " + *id + " revoked; requests with it are refused from now on\n", nil
			})
		},
	}, "create --org ID | list --org ID | revoke --org ID --id KEY")
}

func runAudit(ctx context.Context, args []string) error {
	return subcommands("audit", args, map[string]func([]string) error{
		"tail": func(args []string) error {
			var org *string
			var since *time.Duration
			var limit *int
			return operatorCommand(ctx, "audit tail", args, func(f *flags) {
				org = f.FlagSet.String("org", "", "only this organization's records (default: every org's)")
				since = f.FlagSet.Duration("since", 24*time.Hour, "records of this recent past")
				limit = f.FlagSet.Int("limit", 100, "at most this many records")
			}, func(r *registry.Registry) (map[string]any, string, error) {
				recs, err := r.AuditTrail(ctx, *org, time.Now().Add(-*since), *limit)
				if err != nil {
					return nil, "", err
				}
				var b strings.Builder
				for _, e := range recs {
					fmt.Fprintf(&b, "%s  %-18s %-6s %-28s %-10s %s\n", e.At.Format(time.RFC3339), e.Org, e.Actor, e.Action, e.Outcome, e.Detail)
				}
				if recs == nil {
					recs = []registry.AuditEntry{}
				}
				return map[string]any{"records": recs}, b.String(), nil
			})
		},
	}, "tail [--org ID] [--since 24h] [--limit N]")
}
