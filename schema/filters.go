package schema

import (
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/bmatcuk/doublestar/v4"
)

// Filters select the objects a job indexes (and, as a collection's, what
// its jobs default to and what its S3 notifications index). A pattern is a
// glob (github.com/bmatcuk/doublestar: *, ?, [ab], {a,b}, ** across
// directories); one without "/" is matched against the key's last segment
// (`*.log` is every .log anywhere), one with "/" against the whole key
// (`reports/**/*.pdf`). An object is indexed when it matches an include
// pattern (or there are none), matches no exclude pattern — exclusion wins —
// is at most MaxFileSize bytes (0: any) and was modified after
// ModifiedAfter (when set and known).
type Filters struct {
	Include       []string   `json:"include_patterns,omitempty"`
	Exclude       []string   `json:"exclude_patterns,omitempty"`
	MaxFileSize   int64      `json:"max_file_size,omitempty"`
	ModifiedAfter *time.Time `json:"modified_after,omitempty"`
}

// Bounds of Filters (tenant input).
const (
	MaxFilterPatterns     = 32
	MaxFilterPatternBytes = 256
)

// Validate reports the first pattern or bound that is not acceptable.
func (f *Filters) Validate() error {
	if f == nil {
		return nil
	}
	for _, list := range [][]string{f.Include, f.Exclude} {
		if len(list) > MaxFilterPatterns {
			return fmt.Errorf("at most %d include and %d exclude patterns", MaxFilterPatterns, MaxFilterPatterns)
		}
		for _, p := range list {
			if p == "" || len(p) > MaxFilterPatternBytes || !doublestar.ValidatePattern(p) {
				return fmt.Errorf("pattern %s: want a glob of 1-%d bytes (*, ?, [ab], {a,b}, **)", Quote(p), MaxFilterPatternBytes)
			}
		}
	}
	if f.MaxFileSize < 0 {
		return fmt.Errorf("max_file_size must not be negative")
	}
	return nil
}

// Empty reports whether f selects every object.
func (f *Filters) Empty() bool {
	return f == nil || (len(f.Include) == 0 && len(f.Exclude) == 0 && f.MaxFileSize == 0 && f.ModifiedAfter == nil)
}

// Excludes reports why f leaves out the object key of size bytes, last
// modified at modified ("" when f selects it). A size below 0 or a zero
// time is unknown and excludes nothing.
func (f *Filters) Excludes(key string, size int64, modified time.Time) string {
	switch {
	case f.Empty():
		return ""
	case matchAny(f.Exclude, key):
		return "exclude_patterns"
	case len(f.Include) > 0 && !matchAny(f.Include, key):
		return "include_patterns"
	case f.MaxFileSize > 0 && size > f.MaxFileSize:
		return "max_file_size"
	case f.ModifiedAfter != nil && !modified.IsZero() && !modified.After(*f.ModifiedAfter):
		return "modified_after"
	}
	return ""
}

func matchAny(patterns []string, key string) bool {
	for _, p := range patterns {
		name := key
		if !strings.Contains(p, "/") {
			name = path.Base(key)
		}
		if ok, _ := doublestar.Match(p, name); ok {
			return true
		}
	}
	return false
}

// ReasonExcluded is the reason of what filters left out: the deleted
// outcome of an object a sync's sweep removed because its job's filters
// now exclude it, and the skip of a notification's object its collection's
// filters exclude.
const ReasonExcluded = "excluded_by_filter"
