package main

import (
	"context"
	"fmt"
	"time"

	"github.com/stevedore-dev/stevedore/worker/extract"
)

// runPDFCache compiles PDFium into the cache directory and exits. Compiling
// peaks at ≈ 350 MB; a worker that finds the module in its cache starts in
// half a second at ≈ 55 MB. The Kubernetes worker runs this in an init
// container, so no worker process ever compiles.
func runPDFCache(_ context.Context, args []string) error {
	f := newFlags("pdf-cache")
	dir, memMiB := pdfModuleFlags(f) // the workers' own flags: same defaults, same environment
	if err := f.parse(args); err != nil {
		return err
	}
	if *dir == "" {
		return fmt.Errorf("--cache-dir: no directory (and no user cache directory to default to)")
	}
	if err := atLeast("pdf-memory-mib", memMiB, minPDFMemoryMiB); err != nil {
		return err
	}
	// The worker's rule (90 % of the container's limit, or GOMEMLIMIT): the
	// collector works harder before an init container meets its limit.
	applyMemoryLimit(0, cgroupMemoryFiles)
	start := time.Now()
	p := extract.NewPDF(extract.PDFConfig{Instances: 1, MemoryBytes: int64(*memMiB) << 20, CacheDir: *dir})
	defer p.Close()
	if err := p.Warm(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "PDFium is compiled in %s (%s)\n", *dir, time.Since(start).Round(time.Millisecond))
	return nil
}
