package worker

import (
	"fmt"
	"testing"
	"time"

	"github.com/stevedore-dev/stevedore/schema"
)

// syncJob is a directory job on docs/ as the API makes it by default: a
// sync (delete_missing).
func (e *env) syncJob(id string, mutate ...func(*schema.Job)) *schema.Job {
	job := &schema.Job{JobID: id, Org: e.org.ID, Collection: "docs", IntegrationID: e.in.ID, Kind: schema.JobDirectory, Bucket: bucket,
		Prefix: "docs/", Region: "us-east-1", SkipExisting: true, DeleteMissing: true, CreatedAt: time.Now()}
	for _, m := range mutate {
		m(job)
	}
	return job
}

// visibleKeys is the keys of the chunks visible downstream, with how many.
func visibleKeys(t *testing.T, e *env) map[string]int {
	t.Helper()
	ids, _, _ := visible(t, e)
	keys := map[string]int{}
	for _, c := range e.chunks(t) {
		if ids[c.ChunkID] {
			keys[c.Key]++
		}
	}
	return keys
}

// The index follows the bucket: 10 objects synced; 3 deleted from the
// bucket and 1 rewritten; the same sync again re-indexes the rewritten one,
// deletes the 3 (files_deleted, their chunks invisible downstream) and
// leaves the other 6 alone. A file job on a key deleted since it was
// indexed deletes it too, and completes.
func TestSyncDeletesWhatTheBucketNoLongerHolds(t *testing.T) {
	objects := map[string]string{}
	for i := range 10 {
		objects[fmt.Sprintf("docs/%02d.txt", i)] = fmt.Sprintf("Document number %d of the synced directory.", i)
	}
	objects["elsewhere/keep.txt"] = "Outside the synced prefix."
	e := setup(t, objects)
	e.submitJob(t, &schema.Job{JobID: "job_outside", Org: e.org.ID, Collection: "docs", IntegrationID: e.in.ID, Kind: schema.JobFile, Bucket: bucket,
		Key: "elsewhere/keep.txt", Region: "us-east-1", SkipExisting: true, CreatedAt: time.Now()})
	e.wait(t, "job_outside")
	e.submitJob(t, e.syncJob("job_first"))
	if st := e.wait(t, "job_first"); st.Status != schema.JobStatusCompleted || st.FilesIndexed != 10 || st.Sweep == nil ||
		st.Sweep.Status != schema.SweepDone || st.Sweep.Held != 10 || st.Sweep.Candidates != 0 {
		t.Fatalf("first sync: %+v sweep %+v", st, st.Sweep)
	}
	for _, k := range []string{"docs/01.txt", "docs/02.txt", "docs/03.txt", "docs/09.txt"} {
		e.s3.Delete(bucket, k)
	}
	e.s3.Put(bucket, "docs/04.txt", "Document number 4, rewritten.")
	e.submitJob(t, e.syncJob("job_again"))
	st := e.wait(t, "job_again")
	if st.Status != schema.JobStatusCompleted || st.FilesDeleted != 4 || st.FilesIndexed != 1 || st.FilesSkipped != 5 || st.Sweep.Deleted != 4 || st.Sweep.Held != 10 {
		t.Fatalf("second sync: %+v sweep %+v", st, st.Sweep)
	}
	keys := visibleKeys(t, e)
	for _, k := range []string{"docs/01.txt", "docs/02.txt", "docs/03.txt", "docs/09.txt"} {
		if keys[k] != 0 {
			t.Errorf("%s still visible", k)
		}
	}
	for _, k := range []string{"docs/00.txt", "docs/04.txt", "docs/05.txt", "docs/08.txt", "elsewhere/keep.txt"} {
		if keys[k] == 0 {
			t.Errorf("%s not visible", k)
		}
	}
	if st := e.state(t, "docs/04.txt"); st.JobID != "job_again" {
		t.Fatalf("the rewritten object was not re-indexed: %+v", st)
	}
	// A file job on a key that is gone since it was indexed.
	e.s3.Delete(bucket, "docs/05.txt")
	e.submitFile(t, "job_file", "docs/05.txt", true)
	if st := e.wait(t, "job_file"); st.Status != schema.JobStatusCompleted || st.FilesDeleted != 1 || st.FilesFailed != 0 {
		t.Fatalf("file job on a deleted key: %+v", st)
	}
	if visibleKeys(t, e)["docs/05.txt"] != 0 {
		t.Fatal("docs/05.txt still visible")
	}
}

// The safety valves end to end: a listing S3 fails (the job fails), a
// listing cut by max_files (the sweep is skipped) and a sync that would
// delete most of the scope (refused) delete nothing; allow_mass_delete
// then deletes; delete_missing false is an additive job.
func TestSyncSafetyValves(t *testing.T) {
	objects := map[string]string{}
	for i := range 6 {
		objects[fmt.Sprintf("docs/%d.txt", i)] = fmt.Sprintf("Document %d.", i)
	}
	// Two deliveries: the failing listing is given up on after one retry.
	e := setup(t, objects, func(c *Config) { c.Topology = schema.Topology{AckWait: 5 * time.Second, MaxDeliver: 2} })
	e.submitJob(t, e.syncJob("job_first"))
	if st := e.wait(t, "job_first"); st.Status != schema.JobStatusCompleted {
		t.Fatalf("first sync: %+v", st)
	}
	for _, k := range []string{"docs/0.txt", "docs/1.txt", "docs/2.txt", "docs/3.txt"} {
		e.s3.Delete(bucket, k)
	}
	held := func() int {
		n := 0
		for i := range 6 {
			if st := e.state(t, fmt.Sprintf("docs/%d.txt", i)); st != nil && st.Status == schema.ObjectIndexed {
				n++
			}
		}
		return n
	}

	e.s3.FailLists.Store(true)
	e.submitJob(t, e.syncJob("job_503"))
	if st := e.wait(t, "job_503"); st.Status != schema.JobStatusFailed || held() != 6 {
		t.Fatalf("listing failed: %+v, %d held", st, held())
	}
	e.s3.FailLists.Store(false)

	e.submitJob(t, e.syncJob("job_cut", func(j *schema.Job) { j.MaxFiles = 1; j.DeleteMissing, j.AllowMassDelete = true, true }))
	if st := e.wait(t, "job_cut"); st.Status != schema.JobStatusCompleted || st.Sweep.Status != schema.SweepSkipped || held() != 6 {
		t.Fatalf("cut listing: %+v sweep %+v, %d held", st, st.Sweep, held())
	}

	e.submitJob(t, e.syncJob("job_additive", func(j *schema.Job) { j.DeleteMissing = false }))
	if st := e.wait(t, "job_additive"); st.Status != schema.JobStatusCompleted || st.Sweep != nil || held() != 6 {
		t.Fatalf("additive job: %+v, %d held", st, held())
	}

	e.submitJob(t, e.syncJob("job_mass"))
	st := e.wait(t, "job_mass")
	if st.Status != schema.JobStatusCompletedWithErrors || st.Sweep.Status != schema.SweepRefused || st.Sweep.Candidates != 4 || held() != 6 {
		t.Fatalf("mass delete: %+v sweep %+v, %d held", st, st.Sweep, held())
	}
	if got := e.metric(t, "stevedore_sweeps_total", "status", schema.SweepRefused); got != 1 {
		t.Fatalf("refused sweeps metric %v", got)
	}

	e.submitJob(t, e.syncJob("job_allowed", func(j *schema.Job) { j.AllowMassDelete = true }))
	if st := e.wait(t, "job_allowed"); st.Status != schema.JobStatusCompleted || st.FilesDeleted != 4 || held() != 2 {
		t.Fatalf("allowed mass delete: %+v sweep %+v, %d held", st, st.Sweep, held())
	}
}
