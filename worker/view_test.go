package worker

import (
	"context"
	"fmt"
	"testing"
	"time"

	"strings"

	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/schema/registry"
)

// The worker resolves tenants from a watched copy of the registry; a
// revocation still stops its work: every job submitted after the watch
// delivered it fails as integration_unusable (revoked), without a restart.
func TestRevocationReachesTheWorkerWithoutRegistryReads(t *testing.T) {
	e := setup(t, map[string]string{"a.txt": "alpha", "b.txt": "beta"})
	e.indexFile(t, "job_before", "a.txt")
	if n := e.w.res.Directory.(*registry.View).Reads(); n != 0 {
		t.Fatalf("%d registry reads: tenants should come from the watched view", n)
	}
	if _, err := e.w.cfg.Registry.Revoke(context.Background(), "test", e.org.ID, e.in.ID, "customer left"); err != nil {
		t.Fatal(err)
	}
	// The watch delivers the change within milliseconds; the loop only
	// bounds the wait, it does not time anything.
	deadline := time.Now().Add(20 * time.Second)
	for i := 0; ; i++ {
		id := fmt.Sprintf("job_after_%d", i)
		e.submitFile(t, id, "b.txt", false)
		st := e.wait(t, id)
		if st.Status == schema.JobStatusFailed && st.Error != nil && st.Error.ErrorCode == schema.CodeIntegration && strings.Contains(st.Error.Reason, "revoked") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("jobs still run after the revocation: %+v %+v", st, st.Error)
		}
	}
}
