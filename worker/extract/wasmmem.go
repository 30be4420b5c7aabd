package extract

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero/experimental"
)

// A PDFium instance's WebAssembly memory would otherwise be a Go []byte
// grown by append: every growth copies the whole memory into a new slice and
// leaves the old one to the collector, and the collector lets the heap grow
// to twice what is live before it runs, so two instances that each need
// 60 MiB made a worker's resident memory pass 200 MiB. Backed by its own
// anonymous mapping of the instance's maximum size instead (wasmmem_linux.go),
// the memory is outside the Go heap, grows in place without a copy, costs
// only the pages PDFium touches, and is handed back to the OS when the
// instance closes.

// wazero frees an instance's memory when the instance is closed. Closed
// after its calls return (every document's end), the memory is unmapped at
// once. But killing an instance (time cap, reader gone) and closing the pool
// close instances from another goroutine while a call may still be running;
// such a call stops at its next function call or loop. So while one of those
// is under way (asyncFrees > 0), a freed memory's pages are given back at once
// and the mapping itself stays for unmapGrace.
var asyncFrees atomic.Int64

const unmapGrace = time.Minute

// closingUnderCalls runs close — a kill or the pool's close — with frees
// deferred as above.
func closingUnderCalls(close func() error) error {
	asyncFrees.Add(1)
	defer asyncFrees.Add(-1)
	return close()
}

// wasmMemory is the allocator for PDFium instances' memories, nil where no
// mapping is available (wazero's default then).
func wasmMemory() experimental.MemoryAllocator {
	if !canMap {
		return nil
	}
	return experimental.MemoryAllocatorFunc(func(_, max uint64) experimental.LinearMemory {
		m, err := mapMemory(max)
		if err != nil {
			// No mapping (an address-space limit, strict overcommit): the
			// Go heap, as without an allocator — PDFs still read, with the
			// memory cost this file avoids, so it is said once.
			fallbackOnce.Do(func() {
				slog.Warn("PDFium memory: an anonymous mapping failed; instances use the Go heap (about twice the memory per PDF)",
					"bytes", max, "error", err)
			})
			return &heapMemory{}
		}
		return m
	})
}

// fallbackOnce says the first fallback to the Go heap.
var fallbackOnce sync.Once

// heapMemory is a memory grown by append in the Go heap: wazero's default,
// the fallback when a mapping fails.
type heapMemory struct{ buf []byte }

func (h *heapMemory) Reallocate(size uint64) []byte {
	if n := uint64(len(h.buf)); size > n {
		h.buf = append(h.buf, make([]byte, size-n)...)
	}
	return h.buf[:size]
}

func (h *heapMemory) Free() { h.buf = nil }
