package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"strings"
	"time"

	"github.com/stevedore-dev/stevedore/producer"
	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/schema/registry"
	"github.com/stevedore-dev/stevedore/worker/creds"
)

// operator opens the registry at --nats-url for one operator command.
func operator(ctx context.Context, url natsTarget) (*registry.Registry, func(), error) {
	log := slog.New(slog.DiscardHandler)
	nc, js, err := connect(ctx, url, log)
	if err != nil {
		return nil, nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	// The fleet owns the topology (its replicas, AckWait): operator commands
	// create it only where nothing runs yet.
	if schema.Present(cctx, js) != nil {
		if err := (schema.Topology{}).Ensure(cctx, js); err != nil {
			nc.Close()
			return nil, nil, err
		}
	}
	kek, err := loadKEK(os.Getenv("STEVEDORE_KEK_FILE"))
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	r, err := registry.Open(cctx, js, registry.Config{ExternalIDPrefix: os.Getenv("STEVEDORE_EXTERNAL_ID_PREFIX"), KEK: kek,
		Logger: newLogger("warn", "json")})
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return r, nc.Close, nil
}

func printResult(asJSON bool, v map[string]any, human string) error {
	if asJSON {
		return json.NewEncoder(stdout).Encode(v)
	}
	fmt.Fprint(stdout, human)
	return nil
}

// operatorCommand is the shape every operator command shares: its own flags
// plus --nats-url and --json, a registry connection, one action, and a
// result printed as one JSON object or as text for people.
func operatorCommand(ctx context.Context, name string, args []string, define func(*flags),
	act func(*registry.Registry) (map[string]any, string, error)) error {
	url, asJSON, err := commandFlags(name, args, define)
	if err != nil {
		return err
	}
	r, done, err := operator(ctx, url)
	if err != nil {
		return err
	}
	defer done()
	v, human, err := act(r)
	var after *exitError
	if err != nil && !(errors.As(err, &after) && after.err == nil && v != nil) {
		return err
	}
	if err := printResult(asJSON, v, human); err != nil {
		return err
	}
	if after != nil {
		return after // the result is printed; the exit code says how it ended
	}
	return nil
}

// commandFlags parses an operator command's own flags plus the NATS flags
// (--nats-url, credentials, TLS) and --json.
func commandFlags(name string, args []string, define func(*flags)) (target natsTarget, asJSON bool, err error) {
	f := newFlags(name)
	n := addNATSFlags(f)
	j := f.FlagSet.Bool("json", false, "print one JSON object")
	define(f)
	if err := f.parse(args); err != nil {
		return natsTarget{}, false, err
	}
	return n.target(), *j, nil
}

// subcommands dispatches "<group> <verb> …" to one of verbs.
func subcommands(group string, args []string, verbs map[string]func([]string) error, usage string) error {
	if len(args) > 0 {
		if run, ok := verbs[args[0]]; ok {
			return run(args[1:])
		}
	}
	return usageError(fmt.Errorf("usage: stevedore %s %s", group, usage))
}

const cliActor = "cli"

func runOrg(ctx context.Context, args []string) error {
	verbs := orgAdmin(ctx)
	maps.Copy(verbs, map[string]func([]string) error{
		"create": func(args []string) error {
			var name *string
			return operatorCommand(ctx, "org create", args, func(f *flags) {
				name = f.Need("name", "organization name")
			}, func(r *registry.Registry) (map[string]any, string, error) {
				org, key, err := r.CreateOrg(ctx, cliActor, *name)
				if err != nil {
					return nil, "", err
				}
				return map[string]any{"org_id": org.ID, "name": org.Name, "api_key": key.Reveal(), "external_id": org.ExternalID},
					fmt.Sprintf("Organization %s created.\n  org_id:      %s\n  api_key:     %s   (shown once; store it now)\n  external_id: %s   (put it in your role's trust policy)\n",
						org.Name, org.ID, key.Reveal(), org.ExternalID), nil
			})
		},
		"rotate-external-id": func(args []string) error {
			var id *string
			return operatorCommand(ctx, "org rotate-external-id", args, func(f *flags) {
				id = f.Need("org", "organization ID")
			}, func(r *registry.Registry) (map[string]any, string, error) {
				org, err := r.RotateExternalID(ctx, cliActor, *id)
				if err != nil {
					return nil, "", err
				}
				return map[string]any{"org_id": org.ID, "external_id": org.ExternalID, "rotated_at": org.ExternalIDRotatedAt},
					fmt.Sprintf("ExternalId of %s rotated; the old value no longer works.\n  external_id: %s   (update every role's trust policy, then verify its integration again)\n", org.ID, org.ExternalID), nil
			})
		},
	})
	return subcommands("org", args, verbs, "create --name NAME | rotate-external-id --org ID | list | show --org ID | disable --org ID | enable --org ID")
}

// integrationFlags are the flags that describe an integration's policies.
type integrationFlags struct {
	org, role, kms, region, principal *string
	buckets, prefixes                 multi
	sourceIdentity, sessionTags       *bool
	duration                          *time.Duration
}

func defineIntegrationFlags(f *flags, withRole bool) *integrationFlags {
	c := &integrationFlags{org: f.Need("org", "organization ID")}
	if withRole {
		c.role = f.Need("role-arn", "the customer's IAM role ARN")
		c.region = f.FlagSet.String("region", "", "the buckets' region")
		c.duration = f.FlagSet.Duration("session-duration", 0, "requested session duration (15m-12h; default: the fleet's)")
	}
	c.kms = f.FlagSet.String("kms-key-arn", "", "KMS key the objects are encrypted with (adds kms:Decrypt)")
	c.principal = f.String("principal-arn", "", "stevedore's own role ARN, the Principal of the trust policy")
	c.sourceIdentity = f.FlagSet.Bool("source-identity", false, "set SourceIdentity on sessions (needs sts:SetSourceIdentity)")
	c.sessionTags = f.FlagSet.Bool("session-tags", false, "tag sessions with org and job (needs sts:TagSession)")
	f.FlagSet.Var(&c.buckets, "bucket", "bucket the role may be used for (repeatable)")
	f.FlagSet.Var(&c.prefixes, "prefix", "key prefix the role may be used for (repeatable)")
	return c
}

func (c *integrationFlags) policies(org *registry.Org, in *registry.Integration) (map[string]any, string) {
	principal := *c.principal
	if principal == "" {
		principal = "<STEVEDORE_PRINCIPAL_ARN>"
	}
	p := producer.PoliciesFor(principal, org, in)
	v := p.Map()
	trust, _ := json.MarshalIndent(p.TrustPolicy, "  ", "  ")
	perms, _ := json.MarshalIndent(p.PermissionsPolicy, "  ", "  ")
	tags, _ := json.MarshalIndent(p.ObjectTagsStatement, "  ", "  ")
	return v, fmt.Sprintf("Trust policy:\n  %s\nPermissions policy:\n  %s\nOnly to index with include_object_tags, add to the permissions policy:\n  %s\n"+
		"(stevedore iam-policy --json also prints a CloudFormation template.)\n", trust, perms, tags)
}

func runIntegration(ctx context.Context, args []string) error {
	return subcommands("integration", args, map[string]func([]string) error{
		"add":    func(args []string) error { return integrationAdd(ctx, args) },
		"verify": func(args []string) error { return integrationVerify(ctx, args) },
		"list":   func(args []string) error { return integrationList(ctx, args) },
		"revoke": func(args []string) error { return integrationRevoke(ctx, args) },
	}, "add|verify|list|revoke … (see stevedore help)")
}

// integrationAdd is `integration add`.
func integrationAdd(ctx context.Context, args []string) error {
	var c *integrationFlags
	return operatorCommand(ctx, "integration add", args, func(f *flags) { c = defineIntegrationFlags(f, true) },
		func(r *registry.Registry) (map[string]any, string, error) {
			in, err := r.AddIntegration(ctx, cliActor, *c.org, registry.Spec{RoleARN: *c.role, Buckets: c.buckets, Prefixes: c.prefixes,
				Region: *c.region, KMSKeyARN: *c.kms, SourceIdentity: *c.sourceIdentity, SessionTags: *c.sessionTags, SessionDuration: *c.duration})
			if err != nil {
				return nil, "", err
			}
			org, err := r.Org(ctx, *c.org)
			if err != nil {
				return nil, "", err
			}
			v, human := c.policies(org, in)
			v["integration_id"], v["org_id"], v["role_arn"], v["status"] = in.ID, in.OrgID, in.RoleARN, in.Status
			return v, fmt.Sprintf("Integration %s registered for %s: %s (status %s)\n%sThen: stevedore integration verify --org %s --id %s\n",
				in.ID, in.OrgID, in.RoleARN, in.Status, human, in.OrgID, in.ID), nil
		})
}

// integrationVerify is `integration verify`.
func integrationVerify(ctx context.Context, args []string) error {
	var org, id, bucket, prefix, template *string
	var pathStyle, devEmulator *bool
	return operatorCommand(ctx, "integration verify", args, func(f *flags) {
		org = f.Need("org", "organization ID")
		id = f.Need("id", "integration ID")
		bucket = f.FlagSet.String("bucket", "", "bucket to probe (default: the integration's first)")
		pathStyle = f.Bool("s3-path-style", false, "path-style S3 addressing (MinIO)")
		devEmulator = f.Bool("dev-emulator-sts", false, "DEVELOPMENT ONLY: accept an STS that ignores ExternalId (MinIO)")
		prefix = f.String("session-prefix", creds.SessionPrefixDefault, "RoleSessionName prefix")
		template = f.String("session-name", creds.SessionTemplateDefault, "RoleSessionName template ({prefix}, {org}, {job})")
	}, func(r *registry.Registry) (map[string]any, string, error) {
		return verifyIntegration(ctx, r, *org, *id, *bucket, *pathStyle, *devEmulator, sessionNaming{*prefix, *template})
	})
}

// integrationList is `integration list`.
func integrationList(ctx context.Context, args []string) error {
	var org *string
	return operatorCommand(ctx, "integration list", args, func(f *flags) { org = f.Need("org", "organization ID") },
		func(r *registry.Registry) (map[string]any, string, error) {
			ins, err := r.Integrations(ctx, *org)
			if err != nil {
				return nil, "", err
			}
			var b strings.Builder
			list := []map[string]any{}
			for _, in := range ins {
				name := in.RoleARN
				if in.Kind == registry.KindStaticKeys {
					name = "static keys " + registry.MaskKeyID(in.AccessKeyID)
				}
				health := ""
				if in.Unhealthy != nil {
					health = " UNHEALTHY: " + in.Unhealthy.Class + " " + in.Unhealthy.Code
				}
				fmt.Fprintf(&b, "%s  %-8s %s  %s%s\n", in.ID, in.Status, name, in.StatusReason, health)
				list = append(list, map[string]any{"integration_id": in.ID, "kind": in.Kind, "role_arn": in.RoleARN, "status": in.Status,
					"status_reason": in.StatusReason, "unhealthy": in.Unhealthy, "buckets": in.Buckets})
			}
			return map[string]any{"integrations": list}, b.String(), nil
		})
}

// integrationRevoke is `integration revoke`.
func integrationRevoke(ctx context.Context, args []string) error {
	var org, id, reason, data *string
	return operatorCommand(ctx, "integration revoke", args, func(f *flags) {
		org = f.Need("org", "organization ID")
		id = f.Need("id", "integration ID")
		reason = f.FlagSet.String("reason", "", "why (recorded in AUDIT)")
		data = f.FlagSet.String("data", "retain", "what it indexed: retain, or delete (a wipe job per collection erases the documents read with it)")
	}, func(r *registry.Registry) (map[string]any, string, error) {
		if *data != "retain" && *data != "delete" {
			return nil, "", usageError(fmt.Errorf("integration revoke: --data %q: retain or delete", *data))
		}
		in, err := r.Revoke(ctx, cliActor, *org, *id, *reason)
		if err != nil {
			return nil, "", err
		}
		v := map[string]any{"integration_id": in.ID, "status": in.Status, "status_reason": in.StatusReason}
		human := fmt.Sprintf("Integration %s revoked: %s\n", in.ID, in.StatusReason)
		if *data == "delete" {
			jobs, err := eraseIntegration(ctx, r, *org, in.ID)
			if err != nil {
				return nil, "", err
			}
			v["wipe_jobs"] = jobs
			human += fmt.Sprintf("Erasing what it indexed: %d wipe jobs %s\n", len(jobs), strings.Join(jobs, " "))
		}
		return v, human, nil
	})
}

// verifyIntegration runs verification from this machine, with the AWS
// identity of the default credential chain, and records the report.
func verifyIntegration(ctx context.Context, r *registry.Registry, orgID, id, bucket string, pathStyle, devEmulator bool, names sessionNaming) (map[string]any, string, error) {
	org, err := r.Org(ctx, orgID)
	if err != nil {
		return nil, "", err
	}
	in, err := r.Integration(ctx, orgID, id)
	if err != nil {
		return nil, "", err
	}
	if bucket == "" && len(in.Buckets) > 0 {
		bucket = in.Buckets[0]
	}
	if bucket == "" {
		return nil, "", fmt.Errorf("integration %s names no bucket: pass --bucket", id)
	}
	log := newLogger("warn", "json")
	cfg, err := loadAWSConfig(ctx, log)
	if err != nil {
		return nil, "", fmt.Errorf("load AWS configuration: %w", err)
	}
	v := newVerifier(cfg, pathStyle, names, devEmulator, r, log)
	rep, err := v.Verify(ctx, creds.Target{Org: org, In: in, Bucket: bucket})
	if err != nil {
		// Our identity failed, not the customer's role: the integration is
		// left as it was, and the command fails.
		return nil, "", fmt.Errorf("verification could not run (the integration is unchanged): %w", err)
	}
	in, err = r.RecordVerification(ctx, cliActor, orgID, id, rep)
	if err != nil {
		return nil, "", err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Verification of %s (%s) on s3://%s: %s\n", in.ID, in.RoleARN, bucket, in.Status)
	for _, s := range rep.Steps {
		fmt.Fprintf(&b, "  %-26s %-40s %s\n", s.Status, s.Name, s.Message)
		if s.Hint != "" {
			fmt.Fprintf(&b, "  %-26s hint: %s\n", "", s.Hint)
		}
	}
	return map[string]any{"integration_id": in.ID, "status": in.Status, "status_reason": in.StatusReason, "verification": rep}, b.String(), nil
}

func runIAMPolicy(ctx context.Context, args []string) error {
	var c *integrationFlags
	var queueARN, account *string
	return operatorCommand(ctx, "iam-policy", args, func(f *flags) {
		c = defineIntegrationFlags(f, false)
		queueARN = f.FlagSet.String("queue-arn", "", "also print the access policy of the customer's notification queue (only S3 of --bucket may send)")
		account = f.FlagSet.String("account", "", "the customer's AWS account ID (aws:SourceAccount of the queue policy)")
	}, func(r *registry.Registry) (map[string]any, string, error) {
		org, err := r.Org(ctx, *c.org)
		if err != nil {
			return nil, "", err
		}
		v, human := c.policies(org, &registry.Integration{Buckets: c.buckets, Prefixes: c.prefixes, KMSKeyARN: *c.kms,
			SourceIdentity: *c.sourceIdentity, SessionTags: *c.sessionTags})
		if *queueARN != "" {
			if *account == "" || len(c.buckets) == 0 {
				return nil, "", fmt.Errorf("--queue-arn needs --account and at least one --bucket")
			}
			qp := creds.QueuePolicy(*queueARN, *account, c.buckets)
			v["queue_policy"] = qp
			b, _ := json.MarshalIndent(qp, "  ", "  ")
			human += fmt.Sprintf("Queue access policy (only S3 notifications of these buckets may be sent):\n  %s\n", b)
		}
		return v, human, nil
	})
}
