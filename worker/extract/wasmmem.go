package extract

import (
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

// unmapGrace is how long a freed memory stays mapped (its pages already
// given back) before it is unmapped. wazero frees an instance's memory when
// the instance is closed, and killing an instance (time cap, reader gone)
// closes it from another goroutine while its call may still be running; that
// call stops at its next function call or loop, long before this.
const unmapGrace = time.Minute

// wasmMemory is the allocator for PDFium instances' memories, nil where no
// mapping is available (wazero's default then).
func wasmMemory() experimental.MemoryAllocator {
	if !canMap {
		return nil
	}
	return experimental.MemoryAllocatorFunc(func(_, max uint64) experimental.LinearMemory {
		m, err := mapMemory(max)
		if err != nil {
			return &heapMemory{} // no mapping (address space limit): the Go heap, as without an allocator
		}
		return m
	})
}

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
