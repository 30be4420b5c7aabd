package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/schema/registry"
)

// operator opens the registry at --nats-url for one operator command.
func operator(ctx context.Context, url string) (*registry.Registry, func(), error) {
	log := slog.New(slog.DiscardHandler)
	nc, js, err := connect(ctx, url, log)
	if err != nil {
		return nil, nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := (schema.Topology{}).Ensure(cctx, js); err != nil {
		nc.Close()
		return nil, nil, err
	}
	r, err := registry.Open(cctx, js, registry.Config{ExternalIDPrefix: os.Getenv("STEVEDORE_EXTERNAL_ID_PREFIX")})
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return r, nc.Close, nil
}

func printResult(asJSON bool, v map[string]any, human string) error {
	if asJSON {
		return json.NewEncoder(os.Stdout).Encode(v)
	}
	fmt.Print(human)
	return nil
}

// operatorCommand is the shape every operator command shares: its own flags
// plus --nats-url and --json, a registry connection, one action, and a
// result printed as one JSON object or as text for people.
func operatorCommand(ctx context.Context, name string, args []string, define func(*flags),
	act func(*registry.Registry) (map[string]any, string, error)) error {
	f := newFlags(name)
	url := f.String("nats-url", "nats://127.0.0.1:4222", "NATS server URL")
	asJSON := f.FlagSet.Bool("json", false, "print one JSON object")
	define(f)
	if err := f.parse(args); err != nil {
		return err
	}
	r, done, err := operator(ctx, *url)
	if err != nil {
		return err
	}
	defer done()
	v, human, err := act(r)
	if err != nil {
		return err
	}
	return printResult(*asJSON, v, human)
}

func runOrg(ctx context.Context, args []string) error {
	if len(args) == 0 || args[0] != "create" {
		return fmt.Errorf("usage: stevedore org create --name NAME [--json]")
	}
	var name *string
	return operatorCommand(ctx, "org create", args[1:], func(f *flags) {
		name = f.FlagSet.String("name", "", "organization name")
	}, func(r *registry.Registry) (map[string]any, string, error) {
		org, key, err := r.CreateOrg(ctx, *name)
		if err != nil {
			return nil, "", err
		}
		return map[string]any{"org_id": org.ID, "name": org.Name, "api_key": key.Reveal(), "external_id": org.ExternalID},
			fmt.Sprintf("Organization %s created.\n  org_id:      %s\n  api_key:     %s   (shown once; store it now)\n  external_id: %s   (put it in your role's trust policy)\n",
				org.Name, org.ID, key.Reveal(), org.ExternalID), nil
	})
}

func runIntegration(ctx context.Context, args []string) error {
	if len(args) == 0 || args[0] != "add" {
		return fmt.Errorf("usage: stevedore integration add --org ID --role-arn ARN [--bucket B]... [--json]")
	}
	var org, role *string
	var buckets multi
	return operatorCommand(ctx, "integration add", args[1:], func(f *flags) {
		org = f.FlagSet.String("org", "", "organization ID")
		role = f.FlagSet.String("role-arn", "", "the customer's IAM role ARN")
		f.FlagSet.Var(&buckets, "bucket", "bucket the role may be used for (repeatable)")
	}, func(r *registry.Registry) (map[string]any, string, error) {
		in, err := r.AddIntegration(ctx, *org, *role, buckets)
		if err != nil {
			return nil, "", err
		}
		return map[string]any{"integration_id": in.ID, "org_id": in.OrgID, "role_arn": in.RoleARN, "status": in.Status},
			fmt.Sprintf("Integration %s registered for %s: %s (status %s)\n", in.ID, in.OrgID, in.RoleARN, in.Status), nil
	})
}
