package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/schema/natstest"
)

func TestDLQListShowReplay(t *testing.T) {
	srv, _, js := natstest.Start(t)
	ctx := context.Background()
	task := &schema.Task{Op: schema.OpIndex, Org: "org_1", Collection: "docs", IntegrationID: "int_1", Bucket: "b", Key: "k.txt"}
	payload, _ := schema.Encode(task)
	for i, dl := range []*schema.DeadLetter{
		{Stream: schema.StreamTasks, Subject: schema.TaskSubject("org_1", "docs"), Sequence: 7, Deliveries: 5, Reason: "max_deliver: …", ErrorClass: "max_deliver", Payload: payload, At: time.Now()},
		{Stream: "SQS", Subject: "http://q#1", Reason: "unroutable: no route", ErrorClass: "unroutable", Payload: []byte(`{"Records":[]}`), At: time.Now()},
	} {
		data, _ := schema.Encode(dl)
		if _, err := js.Publish(ctx, schema.DeadSubject(dl.Stream), data, jetstream.WithMsgID(string(rune('a'+i)))); err != nil {
			t.Fatal(err)
		}
	}
	cli, out := cliJSON(t, ctx, srv.ClientURL())
	if list := cli("dlq", "list"); len(list["dead_letters"].([]any)) != 2 {
		t.Fatalf("list %v", list)
	}
	if show := cli("dlq", "show", "--seq", "1"); !strings.Contains(out.String(), "max_deliver") || show["seq"] != float64(1) {
		t.Fatalf("show %v", show)
	}
	rep := cli("dlq", "replay", "--all")
	if len(rep["replayed"].([]any)) != 1 || len(rep["not_replayed"].([]any)) != 1 {
		t.Fatalf("replay %v", rep)
	}
	tasks, _ := js.Stream(ctx, schema.StreamTasks)
	m, err := tasks.GetLastMsgForSubject(ctx, schema.TaskSubject("org_1", "docs"))
	if err != nil || string(m.Data) != string(payload) {
		t.Fatalf("task not back on its queue: %v", err)
	}
	if list := cli("dlq", "list"); len(list["dead_letters"].([]any)) != 1 {
		t.Fatalf("after replay %v", list)
	}
}

// TestNATSURLRedacted: credentials in --nats-url never reach a log line or
// an error.
func TestNATSURLRedacted(t *testing.T) {
	for in, want := range map[string]string{
		"nats://alice:s3cr3t-pass@127.0.0.1:4222":                   "nats://[redacted]@127.0.0.1:4222",
		"nats://tok3n-value@10.0.0.1:4222,nats://u:p@10.0.0.2:4222": "nats://[redacted]@10.0.0.1:4222,nats://[redacted]@10.0.0.2:4222",
		"nats://127.0.0.1:4222":                                     "nats://127.0.0.1:4222",
	} {
		if got := redactURL(in); got != want || strings.Contains(got, "s3cr3t") || strings.Contains(got, "tok3n") {
			t.Errorf("redactURL(%q) = %q, want %q", in, got, want)
		}
	}
	_, _, err := connect(context.Background(), natsTarget{url: "nats://alice:s3cr3t-pass@127.0.0.1:1"}, slog.New(slog.DiscardHandler))
	if err == nil || strings.Contains(err.Error(), "s3cr3t") {
		t.Fatalf("connect error leaks the password: %v", err)
	}
}

func TestFlagsValidated(t *testing.T) {
	for _, args := range [][]string{{"--workers", "-3"}, {"--task-concurrency", "-1"}, {"--sts-rate", "0"}, {"--ack-wait", "1ms"}, {"--replicas", "7"},
		{"--session-name", "stevedore-{job}"}} {
		err := run(context.Background(), append([]string{"dev", "--nats-listen", "127.0.0.1:0", "--data", t.TempDir()}, args...))
		if err == nil || !strings.Contains(err.Error(), strings.TrimPrefix(args[0], "--")) {
			t.Errorf("dev %v: %v", args, err)
		}
	}
	if err := run(context.Background(), []string{"dev", "-h"}); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: %v (main exits 0 for flag.ErrHelp)", err)
	}
}

// TestNATSNkeyAuth: a server that requires an nkey user is reached with
// --nats-nkey, and refused without it.
func TestNATSNkeyAuth(t *testing.T) {
	kp, _ := nkeys.CreateUser()
	pub, _ := kp.PublicKey()
	seed, _ := kp.Seed()
	seedFile := filepath.Join(t.TempDir(), "user.nk")
	if err := os.WriteFile(seedFile, seed, 0o600); err != nil {
		t.Fatal(err)
	}
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true,
		Nkeys: []*server.NkeyUser{{Nkey: pub}}})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(srv.Shutdown)
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("not ready")
	}
	log := slog.New(slog.DiscardHandler)
	if _, _, err := connect(context.Background(), natsTarget{url: srv.ClientURL()}, log); err == nil {
		t.Fatal("connected without credentials")
	}
	nc, _, err := connect(context.Background(), natsTarget{url: srv.ClientURL(), nkey: seedFile}, log)
	if err != nil {
		t.Fatalf("--nats-nkey: %v", err)
	}
	nc.Close()
	if _, _, err := connect(context.Background(), natsTarget{url: srv.ClientURL(), tlsCert: "c.pem"}, log); err == nil || !strings.Contains(err.Error(), "--nats-tls-key") {
		t.Fatalf("cert without key: %v", err)
	}
}

// cliJSON runs operator commands in process against url with --json and
// decodes the one object each prints; out holds the last output.
func cliJSON(t *testing.T, ctx context.Context, url string) (cli func(args ...string) map[string]any, out *syncBuffer) {
	t.Helper()
	out = &syncBuffer{}
	stdout = out
	t.Cleanup(func() { stdout = nil })
	return func(args ...string) map[string]any {
		t.Helper()
		out.mu.Lock()
		out.b.Reset()
		out.mu.Unlock()
		if err := run(ctx, append(args, "--json", "--nats-url", url)); err != nil {
			t.Fatal(err)
		}
		var v map[string]any
		if err := json.Unmarshal([]byte(out.String()), &v); err != nil {
			t.Fatalf("%s: %v", out.String(), err)
		}
		return v
	}, out
}
