package worker

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/worker/creds/awstest"
	"github.com/stevedore-dev/stevedore/worker/index"
)

// notify publishes a task as the SQS bridge does for one notification
// record, and waits until the worker published its outcome event.
func (e *env) notify(t *testing.T, op schema.TaskOp, key, etag, sequencer string) *schema.ObjectEvent {
	t.Helper()
	ctx := context.Background()
	task := &schema.Task{Op: op, Org: e.org.ID, Collection: "docs", IntegrationID: e.in.ID, Bucket: bucket, Key: key, Region: "us-east-1",
		ETag: strings.Trim(etag, `"`), Sequencer: sequencer, SkipExisting: true}
	payload, _ := schema.Encode(task)
	if _, err := e.js.Publish(ctx, schema.TaskSubject(e.org.ID, "docs"), payload, jetstream.WithMsgID(schema.EventTaskMsgID(e.org.ID, "docs", bucket, key, "", sequencer+"|"+string(op)))); err != nil {
		t.Fatal(err)
	}
	id := schema.ObjectEventID(task.JobID, task.Op, task.Bucket, task.Key, task.VersionID+task.Sequencer)
	events, _ := e.js.Stream(ctx, schema.StreamEvents)
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		m, err := events.GetLastMsgForSubject(ctx, schema.ObjectEventSubject(e.org.ID, "docs"))
		if err != nil {
			continue
		}
		if ev, err := schema.DecodeObjectEvent(m.Data); err == nil && ev.EventID == id {
			return ev
		}
	}
	t.Fatalf("no outcome for %s %s %s", op, key, sequencer)
	return nil
}

// TestForgedNotificationsChangeNothing is the probe of issue 15 on the
// wire-format fakes: an indexed object, a forged delete with a huge
// sequencer, then a genuine update. The forged delete is not borne out by S3
// and changes nothing; the genuine update is applied. A forged create that
// matched the object's real ETag (so its sequencer was stored) cannot make
// later genuine events stale either: S3 decides.
func TestForgedNotificationsChangeNothing(t *testing.T) {
	v1 := strings.Repeat("Version one of the contract. ", 20)
	e := setup(t, map[string]string{"contract.txt": v1})
	e.indexFile(t, "job_1", "contract.txt")
	v1IDs, _, _ := visible(t, e)
	forged := strings.Repeat("F", 60)

	// 1–2. A forged delete: S3 still has the object.
	ev := e.notify(t, schema.OpDelete, "contract.txt", "", forged)
	if ev.Outcome != schema.OutcomeSkipped || !strings.HasPrefix(ev.Reason, index.ReasonNotDeletedInS3) {
		t.Fatalf("forged delete: %+v", ev)
	}
	if got, _, _ := visible(t, e); len(got) != len(v1IDs) {
		t.Fatalf("forged delete removed chunks: %d visible, want %d", len(got), len(v1IDs))
	}
	if st := e.state(t, "contract.txt"); st.Status != schema.ObjectIndexed || st.Sequencer != "" {
		t.Fatalf("forged delete changed the state: %+v", st)
	}
	if n := e.metric(t, "stevedore_notifications_unconfirmed_total", "reason", index.ReasonNotDeletedInS3); n != 1 {
		t.Fatalf("unconfirmed deletes counted %v", n)
	}

	// 3. A genuine update afterwards is applied.
	v2 := strings.Repeat("Version two, signed. ", 20)
	e.s3.Put(bucket, "contract.txt", v2)
	if ev := e.notify(t, schema.OpIndex, "contract.txt", awstest.ETag(v2), "0055AED6DCD90281E5"); ev.Outcome != schema.OutcomeIndexed {
		t.Fatalf("genuine update: %+v", ev)
	}
	if st := e.state(t, "contract.txt"); st.ETag != awstest.ETag(v2) || st.Sequencer != "0055AED6DCD90281E5" {
		t.Fatalf("state after the genuine update: %+v", st)
	}

	// A sequencer is poisoned: the object changes in S3 and a forged record
	// naming the new content (so S3 bears it out) arrives first, with the
	// largest sequencer S3 could send. It is stored...
	poison := func(body, sequencer string) {
		t.Helper()
		e.s3.Put(bucket, "contract.txt", body)
		if ev := e.notify(t, schema.OpIndex, "contract.txt", awstest.ETag(body), sequencer); ev.Outcome != schema.OutcomeIndexed {
			t.Fatalf("forged create: %+v", ev)
		}
		if st := e.state(t, "contract.txt"); st.Sequencer != sequencer {
			t.Fatalf("the forged sequencer was not stored (the test needs it): %+v", st)
		}
	}
	v3 := strings.Repeat("Version three. ", 20)
	poison(v3, strings.Repeat("F", 32))
	// ...the genuine notification of that same change is stale, as S3 agrees,
	if ev := e.notify(t, schema.OpIndex, "contract.txt", awstest.ETag(v3), "0055AED6DCD90281F0"); ev.Outcome != schema.OutcomeSkipped || !strings.HasPrefix(ev.Reason, "stale") {
		t.Fatalf("genuine event of the change already indexed: %+v", ev)
	}
	// ...yet a later genuine update with a smaller sequencer is applied,
	v4 := strings.Repeat("Version four. ", 20)
	e.s3.Put(bucket, "contract.txt", v4)
	if ev := e.notify(t, schema.OpIndex, "contract.txt", awstest.ETag(v4), "0055AED6DCD90281F1"); ev.Outcome != schema.OutcomeIndexed {
		t.Fatalf("genuine update after a poisoned sequencer: %+v", ev)
	}
	if st := e.state(t, "contract.txt"); st.ETag != awstest.ETag(v4) || st.Sequencer != "0055AED6DCD90281F1" {
		t.Fatalf("state: %+v", st)
	}
	// ...a genuinely late event for older content is still stale,
	if ev := e.notify(t, schema.OpIndex, "contract.txt", awstest.ETag(v2), "0055AED6DCD90281E9"); ev.Outcome != schema.OutcomeSkipped || !strings.HasPrefix(ev.Reason, "stale") {
		t.Fatalf("late event for older content: %+v", ev)
	}
	// ...and a genuine delete after the sequencer was poisoned again is
	// applied, asking S3 once: every chunk tombstoned.
	poison(strings.Repeat("Version five. ", 20), strings.Repeat("F", 31)+"E")
	e.s3.Delete(bucket, "contract.txt")
	heads := e.s3.Heads.Load()
	if ev := e.notify(t, schema.OpDelete, "contract.txt", "", "0055AED6DCD90281FF"); ev.Outcome != schema.OutcomeDeleted {
		t.Fatalf("genuine delete: %+v", ev)
	}
	if n := e.s3.Heads.Load() - heads; n != 1 {
		t.Fatalf("the stale check and the delete asked S3 %d times, want once", n)
	}
	if got, _, _ := visible(t, e); len(got) != 0 {
		t.Fatalf("%d chunks visible after the genuine delete", len(got))
	}
}

// TestCreateNotAsClaimedKeepsTheSequencer: a record whose ETag is not what
// S3 returns indexes S3's content, but its sequencer is not stored.
func TestCreateNotAsClaimedKeepsTheSequencer(t *testing.T) {
	e := setup(t, map[string]string{"a.txt": "real content"})
	ev := e.notify(t, schema.OpIndex, "a.txt", `"0123456789abcdef"`, strings.Repeat("F", 30))
	if ev.Outcome != schema.OutcomeIndexed || ev.ETag != awstest.ETag("real content") {
		t.Fatalf("%+v", ev)
	}
	if st := e.state(t, "a.txt"); st.Sequencer != "" || st.ETag != awstest.ETag("real content") {
		t.Fatalf("state %+v", st)
	}
}
