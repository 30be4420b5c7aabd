package main

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/stevedore-dev/stevedore/producer"
	"github.com/stevedore-dev/stevedore/schema/registry"
	"github.com/stevedore-dev/stevedore/worker/creds"
)

// sqsFlags configure the SQS bridge of dev and producer.
type sqsFlags struct {
	queues          envMulti
	pollers         *int
	visibility      *time.Duration
	maxReceives     *int
	sessionDuration *time.Duration
	// devEmulatorSTS: --dev-emulator-sts (queue sessions without their
	// session policy, which MinIO's STS refuses); set by startSQS.
	devEmulatorSTS bool
}

func addSQSFlags(f *flags) *sqsFlags {
	c := &sqsFlags{}
	c.queues.values = strings.Fields(os.Getenv("STEVEDORE_SQS_QUEUE_URLS"))
	f.FlagSet.Var(&c.queues, "sqs-queue-url", "SQS queue of S3 notifications to read (repeatable; env STEVEDORE_SQS_QUEUE_URLS, space-separated). "+
		"A queue in a customer's account: URL,integration=ORG/INTEGRATION (read through that role with its ExternalId; its records are routed to ORG only). "+
		"One of ours limited to some orgs: URL,orgs=ORG1+ORG2")
	c.pollers = f.Int("sqs-pollers", 2, "long pollers per queue")
	c.visibility = f.Duration("sqs-visibility", time.Minute, "visibility a received message gets, extended while it is handled")
	c.maxReceives = f.Int("sqs-max-receives", 5, "a message received more often goes to DEAD")
	c.sessionDuration = f.Duration("sqs-session-duration", time.Hour, "session duration for queues read through a customer role (15m-12h)")
	return c
}

// queues builds the bridge's queues: our own identity's client, or one whose
// credentials come from the broker for the named integration.
func (c *sqsFlags) build(awsCfg aws.Config, reg *registry.Registry, broker func() (*creds.Broker, error), names sessionNaming) ([]producer.Queue, error) {
	if *c.sessionDuration < 15*time.Minute || *c.sessionDuration > 12*time.Hour {
		return nil, fmt.Errorf("--sqs-session-duration %s must be between 15m and 12h", *c.sessionDuration)
	}
	own := sqs.NewFromConfig(awsCfg)
	var out []producer.Queue
	for _, spec := range c.queues.values {
		url, via, _ := strings.Cut(spec, ",")
		if via == "" {
			out = append(out, producer.Queue{URL: url, Client: own})
			continue
		}
		if list, ok := strings.CutPrefix(via, "orgs="); ok {
			orgs := strings.Split(list, "+")
			if slices.Contains(orgs, "") {
				return nil, fmt.Errorf("--sqs-queue-url %q: orgs=ORG1+ORG2 lists the orgs the queue may speak for", spec)
			}
			out = append(out, producer.Queue{URL: url, Client: own, AllowOrgs: orgs})
			continue
		}
		ref, ok := strings.CutPrefix(via, "integration=")
		org, in, ok2 := strings.Cut(ref, "/")
		if !ok || !ok2 {
			return nil, fmt.Errorf("--sqs-queue-url %q: want URL, URL,orgs=ORG1+ORG2 or URL,integration=ORG/INTEGRATION", spec)
		}
		q, err := c.customerQueue(awsCfg, reg, broker, names, url, org, in)
		if err != nil {
			return nil, err
		}
		out = append(out, q)
	}
	return out, nil
}

// attached is the Queue of a queue a customer attached over the API.
func (c *sqsFlags) attached(awsCfg aws.Config, reg *registry.Registry, broker func() (*creds.Broker, error), names sessionNaming, rec *registry.NotificationQueue) (producer.Queue, error) {
	return c.customerQueue(awsCfg, reg, broker, names, rec.URL, rec.Org, rec.IntegrationID)
}

// customerQueue is a queue in a customer's account, read through their
// integration's role with a session scoped to the queue. The customer can
// write to their own queue: it speaks for their org only.
func (c *sqsFlags) customerQueue(awsCfg aws.Config, reg *registry.Registry, broker func() (*creds.Broker, error), names sessionNaming, url, org, in string) (producer.Queue, error) {
	arn, err := creds.QueueARN(url, awsCfg.Region)
	if err != nil {
		return producer.Queue{}, err
	}
	b, err := broker()
	if err != nil {
		return producer.Queue{}, err
	}
	res := &creds.Resolver{Registry: reg, Broker: b, SessionPrefix: names.prefix, SessionTemplate: names.template, DevEmulatorSTS: c.devEmulatorSTS}
	qc := res.QueueCredentials(org, in, arn, *c.sessionDuration)
	return producer.Queue{URL: url, Client: sqs.NewFromConfig(awsCfg, func(o *sqs.Options) { o.Credentials = qc }), Org: org}, nil
}

func runRoute(ctx context.Context, args []string) error {
	return subcommands("route", args, map[string]func([]string) error{
		"add": func(args []string) error {
			var org, collection, bucket, prefix, integration, processing, encoding *string
			return operatorCommand(ctx, "route add", args, func(f *flags) {
				org = f.Need("org", "organization ID")
				collection = f.Need("collection", "collection the bucket's objects are indexed into")
				bucket = f.FlagSet.String("bucket", "", "bucket whose notifications this route takes")
				prefix = f.FlagSet.String("prefix", "", "only keys under this prefix (the longest matching prefix wins)")
				integration = f.FlagSet.String("integration", "", "integration to read the objects with (default: the org's only one covering the bucket)")
				processing = f.FlagSet.String("processing-type", "basic", "basic (plain text) or advanced (headings, pages, Markdown tables; see docs/architecture.md)")
				encoding = f.FlagSet.String("encoding", "cl100k_base", "tokenizer: cl100k_base or o200k_base")
			}, func(r *registry.Registry) (map[string]any, string, error) {
				if err := ensureCollection(ctx, r, *org, *collection); err != nil {
					return nil, "", err
				}
				rt, err := r.AddRoute(ctx, cliActor, registry.Route{Org: *org, Collection: *collection, Bucket: *bucket, Prefix: *prefix, IntegrationID: *integration, ProcessingType: *processing, Encoding: *encoding})
				if err != nil {
					return nil, "", err
				}
				return map[string]any{"route_id": rt.ID, "org_id": rt.Org, "collection": rt.Collection, "bucket": rt.Bucket, "prefix": rt.Prefix, "integration_id": rt.IntegrationID, "processing_type": rt.ProcessingType, "encoding": rt.Encoding},
					fmt.Sprintf("Route %s: s3://%s/%s → %s/%s via %s\n", rt.ID, rt.Bucket, rt.Prefix, rt.Org, rt.Collection, rt.IntegrationID), nil
			})
		},
		"list": func(args []string) error {
			return operatorCommand(ctx, "route list", args, func(*flags) {}, func(r *registry.Registry) (map[string]any, string, error) {
				routes, err := r.Routes(ctx)
				if err != nil {
					return nil, "", err
				}
				var b strings.Builder
				for _, rt := range routes {
					fmt.Fprintf(&b, "%s  s3://%s/%s → %s/%s via %s\n", rt.ID, rt.Bucket, rt.Prefix, rt.Org, rt.Collection, rt.IntegrationID)
				}
				return map[string]any{"routes": routes}, b.String(), nil
			})
		},
		"delete": func(args []string) error {
			var org, id *string
			return operatorCommand(ctx, "route delete", args, func(f *flags) {
				org = f.Need("org", "organization ID")
				id = f.Need("id", "route ID")
			}, func(r *registry.Registry) (map[string]any, string, error) {
				if err := r.DeleteRoute(ctx, cliActor, *org, *id); err != nil {
					return nil, "", err
				}
				return map[string]any{"route_id": *id, "deleted": true}, "Route " + *id + " deleted\n", nil
			})
		},
	}, "add --org ID --collection C --bucket B [--prefix P] [--integration ID] | list | delete --org ID --id R")
}

// envMulti is a repeatable flag whose default comes from the environment;
// the first use of the flag replaces the environment's values.
type envMulti struct {
	values []string
	set    bool
}

func (m *envMulti) String() string { return strings.Join(m.values, " ") }
func (m *envMulti) Set(v string) error {
	if !m.set {
		m.values, m.set = nil, true
	}
	m.values = append(m.values, v)
	return nil
}
