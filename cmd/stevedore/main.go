// Command stevedore runs the stevedore indexing fleet and its operator
// commands. It is the only place that reads flags and environment variables
// (flag > STEVEDORE_* environment > default).
package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"syscall"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/stevedore-dev/stevedore/schema/collections"
	"github.com/stevedore-dev/stevedore/schema/jobs"
	"github.com/stevedore-dev/stevedore/schema/registry"
)

const usage = `stevedore indexes customers' S3 buckets through cross-account IAM roles.

Usage: stevedore <command> [flags]

Run the fleet:
  dev          everything in one process on an embedded NATS JetStream server
  producer     the HTTP API, against --nats-url
  worker       workers, against --nats-url
  pdf-cache    compile PDFium into --cache-dir, so workers start without compiling (init containers)

Operator commands (talk to NATS at --nats-url, env STEVEDORE_NATS_URL):
  org create --name N              create an organization: prints org_id, api_key (shown once), external_id
  org rotate-external-id --org ID  mint a new ExternalId; the old one stops working at once
  org list | org show --org ID     organizations; one with its API keys
  org disable|enable --org ID      a disabled org's API keys are refused and its messages not processed
  org disable --org ID --delete-data
                                   offboard: disable, then delete every collection with its chunks (audit kept)
  apikey create|list --org ID      another API key (shown once) | the org's keys with created/last-used times
  apikey revoke --org ID --id KEY  the next request with that key is refused (401)
  audit tail [--org ID] [--since 24h] [--limit N]
                                   the AUDIT stream: onboarding, verification, rotation, refusals
  integration add --org ID --role-arn ARN [--bucket B]... [--prefix P]... [--kms-key-arn K]
                                   register a customer role (pending) and print the policies to paste
  integration verify --org ID --id INT [--bucket B] [--s3-path-style] [--dev-emulator-sts]
                                   verify with this machine's AWS identity: active or failed, step by step
  integration list --org ID        list integrations with status and health
  integration revoke --org ID --id INT [--reason R] [--data retain|delete]
                                   revoke; the role is never assumed again; delete: erase what it indexed
  iam-policy --org ID [--bucket B]... [--prefix P]... [--kms-key-arn K] [--principal-arn ARN] [--queue-arn ARN --account ID]
                                   print the trust policy, permissions policy and CloudFormation template
                                   (and the notification queue's access policy)
  job list --org ID [--collection C] [--status S] [--limit N] [--cursor C]
                                   an org's jobs, newest first
  job show --org ID --id JOB [--wait]
                                   a job; --wait follows it (a progress bar on a terminal, a line per change otherwise)
  job cancel --org ID --id JOB     cancel: no more pages planned, unclaimed tasks skipped
  job retry --org ID --id JOB      a new job re-running only what the job failed on (or timed out extracting)
  schedule set --org ID --collection C --integration INT --bucket B [--prefix P] (--every 6h | --cron EXPR)
                                   the collection syncs the bucket (or prefix) on a schedule
  schedule show|clear --org ID --collection C
  schedule list [--org ID]         schedules, their last successful sync, STALE ones marked
  collection list --org ID | collection show|delete --org ID --collection C
                                   collections with what they hold | delete one with every chunk (a job)
  collection create --org ID --collection C [--processing-type T] [--encoding E] [--description D]
  document list --org ID --collection C [--status S] [--prefix P] [--limit N] [--offset N]
  document show --org ID --collection C --id DOC [--chunks] | document delete … --id DOC
                                   a document with its visible chunks | erase it (a job)
  chunks export --org ID --collection C
                                   the visible chunks as JSON lines: what a consumer folding CHUNKS sees
  route add --org ID --collection C --bucket B [--prefix P] [--integration INT]
                                   send S3 notifications for s3://B/P to a collection
  route list | route delete --org ID --id R
  dlq list [--stream S] | dlq show --seq N | dlq replay (--seq N | --all [--class C])
                                   inspect and replay dead letters
  version                          the build's module version and VCS revision
  help                             this text

Every operator command accepts --json and then prints one JSON object.
Run "stevedore <command> -h" for a command's flags.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return // -h printed the flags: not a failure
		}
		var e *exitError
		if !errors.Is(err, errUsage) && !(errors.As(err, &e) && e.err == nil) {
			reportError(os.Stderr, os.Args[1:], err)
		}
		os.Exit(exitCode(err))
	}
}

// Exit codes, for scripts: 0 done; 1 a runtime error; 2 a usage error (an
// unknown command, verb or flag, a bad flag value; -h is 0); 3 a job
// followed with --wait ended failed or cancelled.
const (
	exitRuntime         = 1
	exitUsage           = 2
	exitJobUnsuccessful = 3
)

// errUsage: the usage was printed already.
var errUsage = errors.New("usage")

// exitError ends the process with code; err, when not nil, is reported.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

// usageError is err as a usage error (exit 2).
func usageError(err error) error { return &exitError{code: exitUsage, err: err} }

// exitCode is the process's exit code for err.
func exitCode(err error) int {
	var e *exitError
	switch {
	case errors.As(err, &e):
		return e.code
	case errors.Is(err, errUsage):
		return exitUsage
	}
	return exitRuntime
}

// failure is how a failed command reports, in the API's shape: a stable
// code for programs, a message and a hint for people.
type failure struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Hint    string `json:"hint"`
}

// describeFailure names err's code and what to do about it.
func describeFailure(err error) failure {
	f := failure{Code: "error", Message: err.Error()}
	var e *exitError
	switch {
	case errors.As(err, &e) && e.code == exitUsage:
		f.Code, f.Hint = "usage", "stevedore help lists the commands; stevedore <command> -h a command's flags"
	case errors.Is(err, nats.ErrNoServers):
		f.Code, f.Hint = "nats_unreachable", "is NATS running at --nats-url (env STEVEDORE_NATS_URL)? stevedore dev runs one embedded on 127.0.0.1:4222"
	case errors.Is(err, nats.ErrAuthorization):
		f.Code, f.Hint = "nats_unauthorized", "NATS refused the credentials: check --nats-nkey or --nats-creds (deploy/README.md, \"Secrets\")"
	case errors.Is(err, context.DeadlineExceeded):
		f.Code, f.Hint = "timeout", "raise --timeout, or follow it again later"
	case errors.Is(err, registry.ErrNotFound), errors.Is(err, jetstream.ErrKeyNotFound), errors.Is(err, collections.ErrNotFound), errors.Is(err, jobs.ErrNotFound):
		f.Code, f.Hint = "not_found", "the list commands (org list, job list --org …, collection list --org …) show what exists"
	}
	return f
}

// reportError writes a failed command's error: as {"error": {"code",
// "message", "hint"}} when the command was asked for --json (scripts parse
// stderr too), else as text with the hint on a second line.
func reportError(w io.Writer, args []string, err error) {
	f := describeFailure(err)
	for _, a := range args {
		if a == "--json" || a == "-json" || a == "--json=true" || a == "-json=true" {
			_ = json.NewEncoder(w).Encode(map[string]failure{"error": f})
			return
		}
	}
	fmt.Fprintln(w, "stevedore:", f.Message)
	if f.Hint != "" {
		fmt.Fprintln(w, "  hint:", f.Hint)
	}
}

func run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, usage)
		return errUsage
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "help", "-h", "--help":
		fmt.Print(usage)
		return nil
	case "version", "--version":
		return printVersion(rest)
	case "dev":
		return runDev(ctx, rest)
	case "producer":
		return runProducer(ctx, rest)
	case "worker":
		return runWorker(ctx, rest)
	case "pdf-cache":
		return runPDFCache(ctx, rest)
	case "org":
		return runOrg(ctx, rest)
	case "integration":
		return runIntegration(ctx, rest)
	case "dlq":
		return runDLQ(ctx, rest)
	case "route":
		return runRoute(ctx, rest)
	case "iam-policy":
		return runIAMPolicy(ctx, rest)
	case "job":
		return runJob(ctx, rest)
	case "schedule":
		return runSchedule(ctx, rest)
	case "collection":
		return runCollection(ctx, rest)
	case "document":
		return runDocument(ctx, rest)
	case "chunks":
		return runChunks(ctx, rest)
	case "apikey":
		return runAPIKey(ctx, rest)
	case "audit":
		return runAudit(ctx, rest)
	}
	fmt.Fprintf(os.Stderr, "unknown command %q\n\n%s", cmd, usage)
	return errUsage
}

// Set by a release build (make release, the Dockerfile):
//
//	-ldflags "-X main.buildVersion=v1.2.3 -X main.buildCommit=<sha> -X main.buildDate=<commit time>"
//
// Without them the Go build information stands in.
var buildVersion, buildCommit, buildDate string

// buildInfo is what this binary says of itself.
type buildInfo struct {
	Version  string `json:"version"`
	Commit   string `json:"commit"`
	Date     string `json:"date"` // the commit's time, so a rebuild of the same commit is the same binary
	Modified bool   `json:"modified,omitempty"`
	Go       string `json:"go"`
}

// build is the release's stamped information, else the module version
// and VCS revision from the Go build information ("(devel)" for go run).
func build() buildInfo {
	b := buildInfo{Version: buildVersion, Commit: buildCommit, Date: buildDate, Go: runtime.Version()}
	if bi, ok := debug.ReadBuildInfo(); ok && b.Version == "" {
		b.Version = bi.Main.Version
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				b.Commit = s.Value
			case "vcs.time":
				b.Date = s.Value
			case "vcs.modified":
				b.Modified = s.Value == "true"
			}
		}
	}
	b.Version = cmp.Or(b.Version, "unknown")
	return b
}

// version is the build on one line, e.g. "v1.2.3 3923e0e4c1a2 2026-12-01T22:03:38Z".
func version() string {
	b := build()
	v := b.Version
	if b.Commit != "" {
		v += " " + b.Commit[:min(12, len(b.Commit))]
	}
	if b.Date != "" {
		v += " " + b.Date
	}
	if b.Modified {
		v += " (modified)"
	}
	return v
}

// printVersion is `stevedore version [--json]`.
func printVersion(args []string) error {
	f := newFlags("version")
	asJSON := f.Bool("json", false, "print {version, commit, date, go} as JSON")
	if err := f.parse(args); err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(build())
	}
	fmt.Fprintln(stdout, "stevedore", version())
	return nil
}
