package worker

import (
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/stevedore-dev/stevedore/schema"
)

// Workers learn of new tasks from one wake signal per planned page, not from
// every task: with discovery effectively off (an hour), a job still runs to
// the end on the signals alone, and the signals number the pages, not the
// objects.
func TestTasksWakeWorkersWithoutFanOut(t *testing.T) {
	objects := map[string]string{}
	for i := 0; i < 9; i++ {
		objects[fmt.Sprintf("doc-%d.txt", i)] = fmt.Sprintf("document %d", i)
	}
	e := setup(t, objects, func(c *Config) { c.DiscoverEvery = time.Hour; c.PageSize = 4 })
	var mu sync.Mutex
	wakes, tasks := 0, 0
	sub, err := e.js.Conn().Subscribe(schema.AllWakes("tasks"), func(m *nats.Msg) {
		n, _ := strconv.Atoi(string(m.Data))
		mu.Lock()
		wakes, tasks = wakes+1, tasks+n
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := e.js.Conn().Flush(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // usually after the worker's first discovery (at start); the test holds either way
	e.submit(t, "job_wake", false)
	st := e.wait(t, "job_wake")
	if st.Status != schema.JobStatusCompleted || st.FilesIndexed != 9 {
		t.Fatalf("job on wake signals alone: %+v", st)
	}
	_ = e.js.Conn().Flush()
	mu.Lock()
	defer mu.Unlock()
	// 9 objects in pages of 4: 3 pages, one signal each, counting 9 tasks.
	if wakes != 3 || tasks != 9 {
		t.Fatalf("%d wake signals for %d tasks; want 3 for 9 (one per page)", wakes, tasks)
	}
}
