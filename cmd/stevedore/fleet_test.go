package main

import (
	"context"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"

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
