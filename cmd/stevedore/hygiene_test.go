package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"

	"github.com/aws/smithy-go/logging"
	"github.com/nats-io/nats.go"

	"github.com/stevedore-dev/stevedore/schema/registry"
)

// TestErrorsAreJSONUnderJSON: a command run with --json reports its failure
// as JSON on stderr in the API's shape ({"error": {code, message, hint}});
// without it, as text with the hint on its own line.
func TestErrorsAreJSONUnderJSON(t *testing.T) {
	var b bytes.Buffer
	reportError(&b, []string{"org", "show", "--org", "org_x", "--json"}, fmt.Errorf("org org_x: %w", registry.ErrNotFound))
	var got struct{ Error failure }
	if err := json.Unmarshal(b.Bytes(), &got); err != nil || got.Error.Code != "not_found" || got.Error.Message != "org org_x: not found" || got.Error.Hint == "" {
		t.Fatalf("%q: %v", b.String(), err)
	}
	b.Reset()
	reportError(&b, []string{"org", "show", "--org", "org_x"}, errors.New("boom"))
	if b.String() != "stevedore: boom\n" {
		t.Fatalf("%q", b.String())
	}
	for _, c := range []struct {
		err  error
		code string
	}{
		{usageError(errors.New("org create: --name is required")), "usage"},
		{fmt.Errorf("connect to NATS at nats://127.0.0.1:1: %w", nats.ErrNoServers), "nats_unreachable"},
		{fmt.Errorf("connect: %w", nats.ErrAuthorization), "nats_unauthorized"},
		{fmt.Errorf("job j is still running after --timeout 1s: %w", context.DeadlineExceeded), "timeout"},
	} {
		if f := describeFailure(c.err); f.Code != c.code || f.Hint == "" {
			t.Errorf("%v: %+v, want code %s with a hint", c.err, f, c.code)
		}
	}
}

// TestSDKLogsAreJSON: the AWS SDK's own warnings go to the JSON log.
func TestSDKLogsAreJSON(t *testing.T) {
	var b bytes.Buffer
	sdkLogger{slog.New(slog.NewJSONHandler(&b, nil))}.Logf(logging.Warn, "Response has no supported checksum. Not validating response payload.")
	var line map[string]any
	if err := json.Unmarshal(b.Bytes(), &line); err != nil || line["level"] != "WARN" || line["component"] != "aws-sdk" ||
		!strings.Contains(line["msg"].(string), "checksum") {
		t.Fatalf("%q: %v", b.String(), err)
	}
}

// TestDevNamesAPortInUse: `stevedore dev` on a NATS port that is taken says
// so at once, instead of "did not start" after a timeout.
func TestDevNamesAPortInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	err = run(context.Background(), []string{"dev", "--data", t.TempDir(), "--nats-listen", ln.Addr().String()})
	if err == nil || !strings.Contains(err.Error(), "address already in use") || !strings.Contains(err.Error(), "--nats-listen") {
		t.Fatalf("got %v", err)
	}
}

// TestHelpGroupsEveryFlag: -h lists each flag once, under a heading, with
// two dashes; required flags come first and say so; examples and the exit
// codes are there.
func TestHelpGroupsEveryFlag(t *testing.T) {
	f := newFlags("org create")
	f.FlagSet.Bool("json", false, "print one JSON object")
	f.Need("name", "organization name")
	f.String("nats-url", "nats://127.0.0.1:4222", "NATS server URL(s)")
	f.Bool("ocr", true, "OCR")
	f.Int("ocr-max-pages", 50, "pages")
	var b bytes.Buffer
	printUsage(&b, f)
	want := "Usage: stevedore org create [flags]\n\nExamples:\n  stevedore org create --name 'Acme Corp.'\n"
	for _, part := range []string{want, "\nFlags:\n  --name string\n      organization name (required)\n  --json\n",
		"\nNATS:\n  --nats-url string\n", "\nOCR (Tesseract):\n  --ocr\n", "  --ocr-max-pages int\n", "Exit codes: 0 done, 1 runtime error, 2 usage error, 3 "} {
		if !strings.Contains(b.String(), part) {
			t.Errorf("no %q in\n%s", part, b.String())
		}
	}
	for _, cmd := range [][]string{{"worker"}, {"dev"}, {"producer"}, {"job", "show"}} {
		b.Reset()
		helpOutput = &b
		err := run(context.Background(), append(cmd, "-h"))
		helpOutput = os.Stderr
		if !errors.Is(err, flag.ErrHelp) {
			t.Fatalf("%v -h: %v", cmd, err)
		}
		seen := map[string]bool{}
		for _, line := range strings.Split(b.String(), "\n") {
			if name, ok := strings.CutPrefix(line, "  --"); ok {
				name, _, _ = strings.Cut(name, " ")
				if seen[name] {
					t.Errorf("%v -h lists --%s twice", cmd, name)
				}
				seen[name] = true
			}
		}
		if len(seen) < 5 || !strings.Contains(b.String(), "\nNATS:\n") {
			t.Errorf("%v -h: %d flags, not grouped:\n%s", cmd, len(seen), b.String())
		}
	}
}

// TestHelpExamplesAreReal: every command -h shows examples for exists, and
// every flag its examples use is one of its flags.
func TestHelpExamplesAreReal(t *testing.T) {
	for name, lines := range examples {
		var b bytes.Buffer
		helpOutput = &b
		err := run(context.Background(), append(strings.Fields(name), "-h"))
		helpOutput = os.Stderr
		if !errors.Is(err, flag.ErrHelp) {
			t.Errorf("%s -h: %v (no such command?)", name, err)
			continue
		}
		for _, line := range lines {
			line, _, _ = strings.Cut(line, "#")
			for _, word := range strings.Fields(line) {
				if flagName, ok := strings.CutPrefix(word, "--"); ok && !strings.Contains(b.String(), "\n  --"+flagName+"\n") &&
					!strings.Contains(b.String(), "\n  --"+flagName+" ") {
					t.Errorf("%s: the example %q uses --%s, not one of its flags", name, line, flagName)
				}
			}
		}
	}
}
