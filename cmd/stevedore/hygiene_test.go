package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"strings"
	"testing"

	"github.com/aws/smithy-go/logging"
)

// TestErrorsAreJSONUnderJSON: a command run with --json reports its failure
// as JSON on stderr; without it, as a line of text.
func TestErrorsAreJSONUnderJSON(t *testing.T) {
	var b bytes.Buffer
	reportError(&b, []string{"org", "show", "--org", "org_x", "--json"}, errors.New(`org org_x: not found`))
	var got struct{ Error string }
	if err := json.Unmarshal(b.Bytes(), &got); err != nil || got.Error != "org org_x: not found" {
		t.Fatalf("%q: %v", b.String(), err)
	}
	b.Reset()
	reportError(&b, []string{"org", "show", "--org", "org_x"}, errors.New("boom"))
	if b.String() != "stevedore: boom\n" {
		t.Fatalf("%q", b.String())
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
