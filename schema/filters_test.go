package schema

import (
	"strings"
	"testing"
	"time"
)

func TestFilters(t *testing.T) {
	after := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f := &Filters{Include: []string{"*.pdf", "docs/**"}, Exclude: []string{"*.log", "docs/tmp/**"}, MaxFileSize: 100, ModifiedAfter: &after}
	late := after.Add(time.Hour)
	for _, tc := range []struct {
		key      string
		size     int64
		modified time.Time
		want     string
	}{
		{"a/b/report.pdf", 10, late, ""},
		{"docs/readme.txt", 10, late, ""},
		{"docs/app.log", 10, late, "exclude_patterns"}, // exclusion wins over include
		{"docs/tmp/x.pdf", 10, late, "exclude_patterns"},
		{"notes.txt", 10, late, "include_patterns"},
		{"a.pdf", 101, late, "max_file_size"},
		{"a.pdf", 10, after, "modified_after"},
		{"a.pdf", 10, time.Time{}, ""}, // unknown: not excluded
	} {
		if got := f.Excludes(tc.key, tc.size, tc.modified); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.key, got, tc.want)
		}
	}
	var none *Filters
	if none.Excludes("x", 1, late) != "" || !none.Empty() || none.Validate() != nil {
		t.Fatal("nil filters must select everything")
	}
	for _, bad := range []*Filters{{Include: []string{"[a"}}, {Exclude: []string{""}}, {Exclude: []string{strings.Repeat("a", 300)}}, {MaxFileSize: -1},
		{Include: make([]string, 33)}} {
		if bad.Validate() == nil {
			t.Errorf("%+v is valid", bad)
		}
	}
}
