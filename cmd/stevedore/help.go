package main

import (
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
)

// flagGroups sorts a command's flags under headings, by name or name
// prefix (a name ending in "-" is a prefix); a flag no group claims is the
// command's own and is listed first.
var flagGroups = []struct {
	title string
	names []string
}{
	{"NATS", []string{"nats-", "update-topology", "replicas", "ack-wait"}},
	{"HTTP API", []string{"listen", "api-rate", "max-queued-jobs"}},
	{"Tenant roles and AWS", []string{"session-", "sts-", "s3-path-style", "principal-arn", "external-id-prefix", "kek-file", "dev-emulator-sts"}},
	{"S3 notifications (SQS)", []string{"sqs-"}},
	{"Work and fairness", []string{"workers", "task-concurrency", "tenant-concurrency", "org-task-share", "plan-concurrency", "steal-above", "no-affinity", "sweep-", "spill-every"}},
	{"Documents", []string{"max-object-mib", "max-decompressed-mib", "chunk-tokens", "pdf-", "cache-dir"}},
	{"OCR (Tesseract)", []string{"ocr", "ocr-"}},
	{"Process, logs and metrics", []string{"log-", "metrics-listen", "pprof", "memory-limit-mib", "shutdown-grace"}},
}

// examples are a few command lines per command, shown by -h.
var examples = map[string][]string{
	"dev":                    {"stevedore dev", "stevedore dev --data /var/lib/stevedore --log-format text"},
	"producer":               {"stevedore producer --nats-url tls://nats:4222 --nats-nkey /etc/stevedore/nats/producer.nk --nats-tls-ca /etc/stevedore/nats/ca.crt"},
	"worker":                 {"stevedore worker --nats-url tls://nats:4222 --nats-nkey /etc/stevedore/nats/worker.nk --workers 8", "STEVEDORE_OCR=false stevedore worker   # every flag also reads STEVEDORE_<NAME>"},
	"org create":             {"stevedore org create --name 'Acme Corp.'", "stevedore org create --name Acme --json | jq -r .api_key"},
	"org show":               {"stevedore org show --org org_3f9c2a71d04e8b56"},
	"integration add":        {"stevedore integration add --org org_3f9c… --role-arn arn:aws:iam::123456789012:role/stevedore-reader --bucket acme-contracts"},
	"integration verify":     {"stevedore integration verify --org org_3f9c… --id int_8d21…"},
	"job list":               {"stevedore job list --org org_3f9c… --status failed --limit 20"},
	"job show":               {"stevedore job show --org org_3f9c… --id job_4be1… --wait --timeout 30m   # exit 3 if it fails"},
	"job retry":              {"stevedore job retry --org org_3f9c… --id job_4be1…"},
	"schedule set":           {"stevedore schedule set --org org_3f9c… --collection contracts --integration int_8d21… --bucket acme-contracts --every 6h"},
	"collection delete":      {"stevedore collection delete --org org_3f9c… --collection contracts"},
	"dlq replay":             {"stevedore dlq replay --all --class throttled"},
	"document show":          {"stevedore document show --org org_3f9c… --collection contracts --id 9f86d081884c7d659a2feaa0c55ad015 --chunks"},
	"route add":              {"stevedore route add --org org_3f9c… --collection contracts --bucket acme-contracts --prefix 2026/"},
	"org rotate-external-id": {"stevedore org rotate-external-id --org org_3f9c…"},
	"integration revoke":     {"stevedore integration revoke --org org_3f9c… --id int_8d21… --data delete"},
	"chunks export":          {"stevedore chunks export --org org_3f9c… --collection contracts > chunks.jsonl"},
	"iam-policy":             {"stevedore iam-policy --org org_3f9c… --bucket acme-contracts --principal-arn arn:aws:iam::999999999999:role/stevedore-fleet"},
	"apikey create":          {"stevedore apikey create --org org_3f9c…"},
	"org disable":            {"stevedore org disable --org org_3f9c… --delete-data   # offboard"},
	"collection create":      {"stevedore collection create --org org_3f9c… --collection contracts --processing-type advanced"},
	"audit tail":             {"stevedore audit tail --org org_3f9c… --since 24h"},
	"integration list":       {"stevedore integration list --org org_3f9c… --json"},
	"pdf-cache":              {"stevedore pdf-cache --cache-dir /var/cache/stevedore"},
}

// groupOf is the heading of flag name ("" for the command's own).
func groupOf(name string) string {
	for _, g := range flagGroups {
		for _, n := range g.names {
			if n == name || strings.HasSuffix(n, "-") && strings.HasPrefix(name, n) {
				return g.title
			}
		}
	}
	return ""
}

// printUsage is a command's -h (and what a flag error prints): its usage
// line, examples, then its flags under headings, required ones first.
func printUsage(w io.Writer, f *flags) {
	fmt.Fprintf(w, "Usage: stevedore %s [flags]\n", f.Name())
	if ex := examples[f.Name()]; len(ex) > 0 {
		fmt.Fprintln(w, "\nExamples:")
		for _, e := range ex {
			fmt.Fprintf(w, "  %s\n", e)
		}
	}
	byGroup := map[string][]*flag.Flag{}
	f.VisitAll(func(fl *flag.Flag) { byGroup[groupOf(fl.Name)] = append(byGroup[groupOf(fl.Name)], fl) })
	own := byGroup[""]
	optional := func(fl *flag.Flag) int { // required first
		if slices.Contains(f.required, fl.Name) {
			return 0
		}
		return 1
	}
	slices.SortStableFunc(own, func(a, b *flag.Flag) int { return optional(a) - optional(b) })
	printGroup(w, "Flags", own)
	for _, g := range flagGroups {
		printGroup(w, g.title, byGroup[g.title])
	}
	fmt.Fprintln(w, "\nExit codes: 0 done, 1 runtime error, 2 usage error, 3 a job followed with --wait failed or was cancelled.")
}

// printGroup lists flags under title, as the flag package would (type,
// usage, default) but with two dashes.
func printGroup(w io.Writer, title string, list []*flag.Flag) {
	if len(list) == 0 {
		return
	}
	fmt.Fprintf(w, "\n%s:\n", title)
	for _, fl := range list {
		kind, usage := flag.UnquoteUsage(fl)
		line := "  --" + fl.Name
		if kind != "" {
			line += " " + kind
		}
		fmt.Fprintf(w, "%s\n      %s", line, usage)
		if fl.DefValue != "" && fl.DefValue != "false" && fl.DefValue != "0" && fl.DefValue != "0s" {
			fmt.Fprintf(w, " (default %q)", fl.DefValue)
		}
		fmt.Fprintln(w)
	}
}
