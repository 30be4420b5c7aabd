//go:build linux

package extract

import (
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

const canMap = true

// liveMemories counts the mapped memories not yet freed.
var liveMemories atomic.Int64

// mappedMemory is a WebAssembly memory backed by an anonymous private mapping
// of its maximum size, reserved without committing: untouched pages cost
// nothing, and the address never changes as the memory grows.
type mappedMemory struct {
	mu  sync.Mutex
	buf []byte // the whole mapping; nil once freed
}

func mapMemory(max uint64) (*mappedMemory, error) {
	if max == 0 || max > 1<<32 {
		return nil, syscall.EINVAL // a 32-bit memory is at most 4 GiB; 0 cannot be mapped
	}
	buf, err := syscall.Mmap(-1, 0, int(max), syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANON|syscall.MAP_NORESERVE)
	if err != nil {
		return nil, err
	}
	liveMemories.Add(1)
	return &mappedMemory{buf: buf}, nil
}

// Reallocate grows the memory in place: the pages past the old size were
// never touched, so they read as zeros, as WebAssembly requires.
func (m *mappedMemory) Reallocate(size uint64) []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.buf == nil || size > uint64(len(m.buf)) {
		return nil // past the maximum (wazero checks it first), or freed: the guest sees a failed grow
	}
	return m.buf[:size]
}

// Free unmaps the memory, or — while an instance may be closed under a
// running call (see asyncFrees) — gives its pages back at once and unmaps it
// after unmapGrace: such a call writes to fresh zero pages meanwhile instead
// of faulting.
func (m *mappedMemory) Free() {
	m.mu.Lock()
	buf := m.buf
	m.buf = nil
	m.mu.Unlock()
	if buf == nil {
		return
	}
	liveMemories.Add(-1)
	if asyncFrees.Load() == 0 {
		_ = syscall.Munmap(buf)
		return
	}
	_ = syscall.Madvise(buf, syscall.MADV_DONTNEED)
	time.AfterFunc(unmapGrace, func() { _ = syscall.Munmap(buf) })
}
