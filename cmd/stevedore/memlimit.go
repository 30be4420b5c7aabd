package main

import (
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// The cgroup files that hold a container's memory limit (v2, then v1).
var cgroupMemoryFiles = []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"}

// applyMemoryLimit sets the process's soft memory limit (Go's GOMEMLIMIT:
// the garbage collector works harder as the heap nears it, instead of
// letting it double before collecting). mib > 0 sets it; 0 keeps GOMEMLIMIT
// when it is set, else takes 90 % of the container's memory limit (cgroup),
// else sets none. It returns the limit in bytes (0: none) and where it came
// from.
func applyMemoryLimit(mib int, files []string) (int64, string) {
	switch {
	case mib > 0:
		limit := int64(mib) << 20
		debug.SetMemoryLimit(limit)
		return limit, "--memory-limit-mib"
	case os.Getenv("GOMEMLIMIT") != "":
		return debug.SetMemoryLimit(-1), "GOMEMLIMIT" // the runtime has applied it; -1 reads it
	}
	for _, f := range files {
		if limit, ok := cgroupLimit(f); ok {
			soft := limit / 10 * 9
			debug.SetMemoryLimit(soft)
			return soft, fmt.Sprintf("90%% of the container's limit (%s: %d MiB)", f, limit>>20)
		}
	}
	return 0, "none (no flag, GOMEMLIMIT or container limit)"
}

// cgroupLimit reads a cgroup memory limit file: "max" (v2) or a huge
// number (v1) means no limit.
func cgroupLimit(file string) (int64, bool) {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0, false
	}
	v, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil || v <= 0 || v >= 1<<50 {
		return 0, false
	}
	return v, true
}

func logMemoryLimit(log *slog.Logger, limit int64, source string) {
	if limit <= 0 || limit == 1<<63-1 {
		log.Info("no soft memory limit", "source", source)
		return
	}
	log.Info("soft memory limit", "mib", limit>>20, "source", source)
}
