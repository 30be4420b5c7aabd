//go:build !linux

package extract

import "errors"

const canMap = false

func mapMemory(uint64) (*heapMemory, error) {
	return nil, errors.New("mapped WebAssembly memories are Linux-only")
}
