package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/stevedore-dev/stevedore/schema/natstest"
)

func TestMemoryLimit(t *testing.T) {
	t.Setenv("GOMEMLIMIT", "")
	before := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(before) })
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	unlimitedV2, unlimitedV1 := write("v2max", "max\n"), write("v1huge", "9223372036854771712\n")
	limited := write("limited", "536870912\n") // 512 MiB

	// The flag wins.
	if got, src := applyMemoryLimit(300, []string{limited}); got != 300<<20 || src != "--memory-limit-mib" || debug.SetMemoryLimit(-1) != 300<<20 {
		t.Fatalf("flag: %d %q", got, src)
	}
	// No flag: 90 % of the container's limit; "max" and v1's huge number
	// are no limit.
	if got, src := applyMemoryLimit(0, []string{unlimitedV2, unlimitedV1, limited}); got != 536870912/10*9 || !strings.Contains(src, "512 MiB") ||
		debug.SetMemoryLimit(-1) != got {
		t.Fatalf("cgroup: %d %q", got, src)
	}
	debug.SetMemoryLimit(before)
	if got, _ := applyMemoryLimit(0, []string{unlimitedV2, unlimitedV1, filepath.Join(dir, "absent")}); got != 0 || debug.SetMemoryLimit(-1) != before {
		t.Fatalf("no limit anywhere: %d", got)
	}
	// GOMEMLIMIT set: the runtime applied it at start; it is kept.
	t.Setenv("GOMEMLIMIT", "200MiB")
	if _, src := applyMemoryLimit(0, []string{limited}); src != "GOMEMLIMIT" || debug.SetMemoryLimit(-1) != before {
		t.Fatalf("GOMEMLIMIT: %q", src)
	}
}

// A producer or worker connects by URL; only dev's own processes connect to
// its embedded server in-process. (A nil server in the target's interface
// once made every producer and worker fail to connect.)
func TestTargetInProcessOnlyInDev(t *testing.T) {
	c := addFleetFlags(newFlags("worker"), false, 1)
	if tg := c.target(); tg.inProcess != nil || tg.url == "" {
		t.Fatalf("worker: in-process %v, url %q", tg.inProcess, tg.url)
	}
	srv, _, _ := natstest.Start(t)
	c.embedded = srv
	if tg := c.target(); tg.inProcess == nil {
		t.Fatal("dev: not in-process")
	}
}

// TestPDFCache: `stevedore pdf-cache` fills the directory the workers'
// --cache-dir names (the directory the tests share: compiled once per
// machine), and refuses what would not work.
func TestPDFCache(t *testing.T) {
	dir := defaultCacheDir()
	if dir == "" {
		dir = t.TempDir()
	}
	out := &syncBuffer{}
	stdout = out
	t.Cleanup(func() { stdout = nil })
	limit := debug.SetMemoryLimit(-1) // pdf-cache sets the container's soft limit: not for the other tests
	t.Cleanup(func() { debug.SetMemoryLimit(limit) })
	if err := run(context.Background(), []string{"pdf-cache", "--cache-dir", dir}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "PDFium is compiled in "+dir) {
		t.Fatalf("printed %q", out.String())
	}
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) == 0 {
		t.Fatalf("cache directory %s: %v, %d entries", dir, err, len(entries))
	}
	for _, args := range [][]string{{"--pdf-memory-mib", "8"}, {"--cache-dir", ""}} {
		if err := run(context.Background(), append([]string{"pdf-cache"}, args...)); err == nil {
			t.Errorf("pdf-cache %v: no error", args)
		}
	}
}

// A worker started before NATS waits for it: its metrics listener says it
// is alive and not ready meanwhile (no crash loop), and it becomes ready
// once NATS comes up.
func TestWorkerWaitsForNATS(t *testing.T) {
	natsPort, metricsPort := freeTCPPort(t), freeTCPPort(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"worker", "--workers", "0", "--nats-url", fmt.Sprintf("nats://127.0.0.1:%d", natsPort),
			"--metrics-listen", fmt.Sprintf("127.0.0.1:%d", metricsPort), "--log-level", "error"})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("worker: %v", err)
		}
	}()
	get := func(path string) int {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d%s", metricsPort, path))
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	waitFor(t, func() bool { return get("/healthz") == http.StatusOK })
	if code := get("/readyz"); code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz %d before NATS is up", code)
	}
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: natsPort, JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	defer srv.Shutdown()
	waitFor(t, func() bool { return get("/readyz") == http.StatusOK })
}

func freeTCPPort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// waitFor polls cond until it holds (a minute at most: the worker backs
// off up to 10 s between tries).
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); !cond(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within a minute")
		}
	}
}

// Logs read as durations, in JSON for collectors and text for people; an
// unknown format is a usage error before anything starts.
func TestLogFormats(t *testing.T) {
	var b bytes.Buffer
	logOutput = &b
	t.Cleanup(func() { logOutput = os.Stderr })
	newLogger("info", "json").Info("page planned", "took", 566*time.Millisecond)
	newLogger("info", "text").Info("page planned", "took", 566*time.Millisecond)
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], `"took":"566ms"`) || !strings.Contains(lines[1], "took=566ms") || !strings.Contains(lines[1], `msg="page planned"`) {
		t.Fatalf("%q", lines)
	}
	err := run(context.Background(), []string{"worker", "--log-format", "xml"})
	if exitCode(err) != exitUsage || !strings.Contains(fmt.Sprint(err), "--log-format") {
		t.Fatalf("--log-format xml: %v", err)
	}
}
