package extract

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"unsafe"

	"github.com/stevedore-dev/stevedore/worker/extract/extracttest"
)

// TestMappedMemoryGrowsInPlace: growing keeps the address and the contents,
// the new pages read as zeros, nothing grows past the maximum, and a freed
// memory grows no more.
func TestMappedMemoryGrowsInPlace(t *testing.T) {
	before := liveMemories.Load()
	m, err := mapMemory(4 << 20)
	if err != nil {
		t.Fatal(err)
	}
	a := m.Reallocate(64 << 10)
	if len(a) != 64<<10 {
		t.Fatalf("len %d", len(a))
	}
	for i := range a {
		a[i] = 0xAB
	}
	b := m.Reallocate(1 << 20)
	if len(b) != 1<<20 || unsafe.SliceData(a) != unsafe.SliceData(b) {
		t.Fatalf("grew to %d bytes at %p, was at %p", len(b), unsafe.SliceData(b), unsafe.SliceData(a))
	}
	if b[0] != 0xAB || b[64<<10-1] != 0xAB || !bytes.Equal(b[64<<10:], make([]byte, len(b)-64<<10)) {
		t.Fatal("the old contents moved or the new pages are not zero")
	}
	if m.Reallocate(4<<20+1) != nil {
		t.Fatal("grew past the maximum")
	}
	if liveMemories.Load() != before+1 {
		t.Fatalf("live memories %d, want %d", liveMemories.Load(), before+1)
	}
	m.Free()
	m.Free() // twice is harmless
	if m.Reallocate(64<<10) != nil {
		t.Fatal("a freed memory grew")
	}
	if liveMemories.Load() != before {
		t.Fatalf("live memories %d after free, want %d", liveMemories.Load(), before)
	}
	if _, err := mapMemory(0); err == nil {
		t.Fatal("mapped an empty memory")
	}
}

// TestPDFInstancesUseMappedMemory: a PDFium instance's memory is a mapping
// while it reads a document and is given back when the document is done.
func TestPDFInstancesUseMappedMemory(t *testing.T) {
	p := testPDF(t)
	before := liveMemories.Load()
	// Far more text than the buffers between the instance and the reader
	// (64 KiB + 8 KiB), so the instance is still at work after the first read.
	doc := extracttest.PDF(120, func(i int) []string { return extracttest.Prose(i, 50) })
	x, err := Options{PDF: p}.Open(bytes.NewReader(doc), "doc.pdf", "")
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	first, err := x.Next(16)
	if err != nil {
		t.Fatal(err)
	}
	total := len(first)
	if live := liveMemories.Load(); live != before+1 {
		t.Fatalf("%d mapped memories while reading, want %d", live, before+1)
	}
	for {
		part, err := x.Next(1 << 16)
		if errors.Is(err, io.EOF) {
			break
		}
		total += len(part)
		if err != nil {
			t.Fatal(err)
		}
	}
	if total < 4*(64+8)<<10 {
		t.Fatalf("only %d bytes of text: the instance may have finished before the first read", total)
	}
	if live := liveMemories.Load(); live != before {
		t.Fatalf("%d mapped memories after the document, want %d", live, before)
	}
}

// TestColdStartHandsTheCompilersMemoryBack: starting on an empty cache
// directory compiles PDFium, which leaves ≈ 300 MB of garbage; the pool
// collects it and gives it back to the OS at once instead of keeping it.
func TestColdStartHandsTheCompilersMemoryBack(t *testing.T) {
	dir := t.TempDir()
	p := NewPDF(PDFConfig{Instances: 1, CacheDir: dir})
	t.Cleanup(func() { p.Close() })
	if err := p.Warm(); err != nil {
		t.Fatal(err)
	}
	files := 0
	_ = filepath.WalkDir(dir, func(_ string, e fs.DirEntry, _ error) error {
		if e != nil && e.Type().IsRegular() {
			files++
		}
		return nil
	})
	if files == 0 {
		t.Fatal("nothing was written to the cache directory")
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	if kept := ms.HeapSys - ms.HeapReleased; kept > 100<<20 {
		t.Fatalf("the heap keeps %d MiB from the OS after a cold start: the compiler's garbage was not handed back", kept>>20)
	}
	t.Logf("heap keeps %d MiB from the OS after a cold start", (ms.HeapSys-ms.HeapReleased)>>20)
	if _, _, err := openPDF(t, p, makePDF(1, func(int) string { return "from the cache" })); err != nil {
		t.Fatal(err)
	}
}

// TestFreeUnmaps: a memory freed after its calls is unmapped at once; one
// freed while instances may be closed under running calls (a kill, the
// pool's close) keeps its mapping, without its pages, for unmapGrace.
func TestFreeUnmaps(t *testing.T) {
	mapped := func(m *mappedMemory) func() bool {
		start := fmt.Sprintf("%x-", uintptr(unsafe.Pointer(unsafe.SliceData(m.buf))))
		return func() bool {
			maps, err := os.ReadFile("/proc/self/maps")
			if err != nil {
				t.Fatal(err)
			}
			for _, line := range strings.Split(string(maps), "\n") {
				if strings.HasPrefix(line, start) {
					return true
				}
			}
			return false
		}
	}
	m, err := mapMemory(1 << 20)
	if err != nil {
		t.Fatal(err)
	}
	isMapped := mapped(m)
	m.Reallocate(1 << 20)[0] = 1
	if !isMapped() {
		t.Fatal("the memory is not in /proc/self/maps")
	}
	m.Free()
	if isMapped() {
		t.Fatal("a memory freed after its calls is still mapped")
	}

	m, err = mapMemory(1 << 20)
	if err != nil {
		t.Fatal(err)
	}
	isMapped = mapped(m)
	buf := m.Reallocate(1 << 20)
	buf[0] = 1
	_ = closingUnderCalls(func() error { m.Free(); return nil })
	if !isMapped() {
		t.Fatal("a memory freed under a kill was unmapped at once")
	}
	if buf[0] != 0 {
		t.Fatal("a memory freed under a kill kept its pages")
	}
	buf[1] = 2 // a call still running writes to a fresh page, without faulting
}

// TestMappingFailureFallsBackLoudly: a memory that cannot be mapped comes
// from the Go heap, works, and the process says so (once).
func TestMappingFailureFallsBackLoudly(t *testing.T) {
	var logged bytes.Buffer
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&logged, nil)))
	t.Cleanup(func() { slog.SetDefault(prev) })
	fallbackOnce = sync.Once{}             // this test's fallback is the first, whatever ran before
	mem := wasmMemory().Allocate(0, 1<<33) // past a 32-bit memory: no mapping
	if _, ok := mem.(*heapMemory); !ok {
		t.Fatalf("got %T, want the heap fallback", mem)
	}
	a := mem.Reallocate(10)
	a[9] = 7
	if b := mem.Reallocate(1 << 16); len(b) != 1<<16 || b[9] != 7 || b[1<<16-1] != 0 {
		t.Fatalf("the fallback grew to %d bytes, or lost its contents", len(b))
	}
	mem.Free()
	if !strings.Contains(logged.String(), "anonymous mapping failed") {
		t.Fatalf("logged %q", logged.String())
	}
}
