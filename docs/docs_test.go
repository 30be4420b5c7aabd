// Package docs holds stevedore's documentation beyond the README; its test
// keeps the documents honest about the code they name.
package docs

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// documents are the Markdown files whose code paths are checked.
func documents(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, pattern := range []string{"../README.md", "*.md", "../deploy/*.md"} {
		m, err := filepath.Glob(pattern)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m...)
	}
	if len(out) < 3 {
		t.Fatalf("only %v", out)
	}
	return out
}

// topDirs are the repository's top-level directories: a backticked word
// that starts with one of them names a file or folder that must exist.
var topDirs = []string{"cmd/", "producer/", "worker/", "schema/", "deploy/", "scripts/", "docs/", "bench/", ".ci/"}

var (
	code = regexp.MustCompile("`([^`\n]+)`")
	link = regexp.MustCompile(`\]\(([^)]+)\)`)
)

// TestCodePathsExist: every repository path a document names in backticks
// (`worker/task.go`, `schema/testdata`) exists, and every link stays inside
// the repository and points at a file that exists.
func TestCodePathsExist(t *testing.T) {
	checked := 0
	for _, doc := range documents(t) {
		data, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		text := string(data)
		for _, m := range code.FindAllStringSubmatch(text, -1) {
			for _, word := range strings.Fields(m[1]) {
				p := repoPath(word)
				if p == "" {
					continue
				}
				checked++
				if _, err := os.Stat(filepath.Join("..", p)); err != nil {
					t.Errorf("%s names %s, which does not exist", doc, p)
				}
			}
		}
		for _, m := range link.FindAllStringSubmatch(text, -1) {
			target, _, _ := strings.Cut(m[1], "#")
			if strings.Contains(target, "://") || strings.HasPrefix(target, "/") {
				t.Errorf("%s links outside the repository: %s", doc, m[1])
				continue
			}
			if target == "" {
				continue
			}
			abs, _ := filepath.Abs(filepath.Join(filepath.Dir(doc), target))
			root, _ := filepath.Abs("..")
			if !strings.HasPrefix(abs, root+string(filepath.Separator)) {
				t.Errorf("%s links outside the repository: %s", doc, m[1])
				continue
			}
			checked++
			if _, err := os.Stat(abs); err != nil {
				t.Errorf("%s links to %s, which does not exist", doc, target)
			}
		}
		if strings.Contains(text, "../shared") {
			t.Errorf("%s points at ../shared, which is not in the repository", doc)
		}
	}
	if checked < 50 {
		t.Fatalf("only %d paths checked: the pattern no longer finds them", checked)
	}
}

// repoPath is the repository path a backticked word names ("" if none):
// it starts with a top-level directory; a trailing "(…)" or punctuation
// and a ":line" are not part of it; a word with wildcards, placeholders or
// flags is not a path.
func repoPath(word string) string {
	word = strings.TrimRight(word, ".,;:)")
	if i := strings.IndexAny(word, "(:"); i >= 0 {
		word = word[:i]
	}
	ok := false
	for _, d := range topDirs {
		if strings.HasPrefix(word, d) {
			ok = true
		}
	}
	if !ok || strings.ContainsAny(word, "*<>{}$=…|") {
		return ""
	}
	return strings.TrimSuffix(word, "/")
}
