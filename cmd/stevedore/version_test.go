package main

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"testing"
)

// A release build says what it is: the version, commit and commit date the
// linker stamped, as text and as JSON (make release and the Dockerfile pass
// them).
func TestReleaseVersion(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "stevedore")
	ld := "-X main.buildVersion=v9.8.7 -X main.buildCommit=0123456789abcdef0123 -X main.buildDate=2026-12-07T10:00:00Z"
	if out, err := exec.Command("go", "build", "-ldflags", ld, "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "version", "--json").Output()
	if err != nil {
		t.Fatal(err)
	}
	var b buildInfo
	if err := json.Unmarshal(out, &b); err != nil || b.Version != "v9.8.7" || b.Commit != "0123456789abcdef0123" || b.Date != "2026-12-07T10:00:00Z" || b.Go == "" {
		t.Fatalf("%s (%v)", out, err)
	}
	text, _ := exec.Command(bin, "version").Output()
	if string(text) != "stevedore v9.8.7 0123456789ab 2026-12-07T10:00:00Z\n" {
		t.Fatalf("%q", text)
	}
}
