package token

import (
	"container/heap"
	"math"
)

// heapThreshold is the piece length (bytes) above which the merge switches
// from tiktoken's linear scan per merge (fast for the short pieces of real
// text) to a heap (O(n log n) for adversarial pieces).
const heapThreshold = 256

const noRank = math.MaxInt

// merge runs the byte-pair merge over piece and returns the number of tokens;
// emit, when not nil, receives each token's bytes in order. At every step the
// adjacent pair with the lowest rank is merged, the leftmost on ties — the
// same order as tiktoken's _byte_pair_merge, so the results are identical.
func (e *Encoding) merge(piece string, emit func(string)) int {
	if len(piece) > heapThreshold {
		return e.mergeHeap(piece, emit)
	}
	return e.mergeScan(piece, emit)
}

type part struct{ start, rank int }

func (e *Encoding) pairRank(piece string, parts []part, i int) int {
	if i+2 < len(parts) {
		if r, ok := e.ranks[piece[parts[i].start:parts[i+2].start]]; ok {
			return r
		}
	}
	return noRank
}

func (e *Encoding) mergeScan(piece string, emit func(string)) int {
	var stack [heapThreshold + 2]part
	parts := stack[:0]
	for i := 0; i <= len(piece); i++ {
		parts = append(parts, part{start: i, rank: noRank})
	}
	for i := 0; i+2 < len(parts); i++ {
		parts[i].rank = e.pairRank(piece, parts, i)
	}
	for len(parts) > 2 {
		minRank, minI := noRank, -1
		for i := 0; i+1 < len(parts); i++ {
			if parts[i].rank < minRank {
				minRank, minI = parts[i].rank, i
			}
		}
		if minI < 0 {
			break
		}
		parts = append(parts[:minI+1], parts[minI+2:]...)
		parts[minI].rank = e.pairRank(piece, parts, minI)
		if minI > 0 {
			parts[minI-1].rank = e.pairRank(piece, parts, minI-1)
		}
	}
	if emit != nil {
		for i := 0; i+1 < len(parts); i++ {
			emit(piece[parts[i].start:parts[i+1].start])
		}
	}
	return len(parts) - 1
}

// mergeHeap is mergeScan over a doubly linked list of parts with a min-heap
// of candidate pairs keyed (rank, start); stale entries are skipped lazily.
func (e *Encoding) mergeHeap(piece string, emit func(string)) int {
	n := len(piece)
	next := make([]int, n+1) // next[i]: start of the part after the one at i; n for the last
	prev := make([]int, n+1)
	gen := make([]int, n+1) // bumped whenever the pair starting at i changes
	alive := make([]bool, n+1)
	for i := 0; i <= n; i++ {
		next[i], prev[i], alive[i] = i+1, i-1, true
	}
	h := &pairHeap{}
	rankAt := func(i int) int {
		j := next[i]
		if j >= n {
			return noRank
		}
		if r, ok := e.ranks[piece[i:next[j]]]; ok {
			return r
		}
		return noRank
	}
	push := func(i int) {
		gen[i]++
		if r := rankAt(i); r != noRank {
			heap.Push(h, pairEntry{rank: r, start: i, gen: gen[i]})
		}
	}
	for i := 0; i+1 < n; i++ {
		push(i)
	}
	count := n
	for h.Len() > 0 {
		top := heap.Pop(h).(pairEntry)
		i := top.start
		if !alive[i] || top.gen != gen[i] {
			continue
		}
		j := next[i] // merge the part at j into the part at i
		alive[j] = false
		next[i] = next[j]
		if next[j] <= n {
			prev[next[j]] = i
		}
		count--
		push(i)
		if p := prev[i]; p >= 0 {
			push(p)
		}
	}
	if emit != nil {
		for i := 0; i < n; i = next[i] {
			emit(piece[i:next[i]])
		}
	}
	return count
}

type pairEntry struct{ rank, start, gen int }

type pairHeap []pairEntry

func (h pairHeap) Len() int { return len(h) }
func (h pairHeap) Less(a, b int) bool {
	if h[a].rank != h[b].rank {
		return h[a].rank < h[b].rank
	}
	return h[a].start < h[b].start
}
func (h pairHeap) Swap(a, b int) { h[a], h[b] = h[b], h[a] }
func (h *pairHeap) Push(x any)   { *h = append(*h, x.(pairEntry)) }
func (h *pairHeap) Pop() any     { old := *h; x := old[len(old)-1]; *h = old[:len(old)-1]; return x }
