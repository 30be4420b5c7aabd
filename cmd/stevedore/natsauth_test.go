package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/worker/creds/awstest"
)

// violations is a nats-server logger that keeps every permission
// violation the server reports.
type violations struct {
	mu    sync.Mutex
	lines []string
}

func (v *violations) keep(format string, args ...any) {
	if line := fmt.Sprintf(format, args...); strings.Contains(line, "Violation") {
		v.mu.Lock()
		v.lines = append(v.lines, line)
		v.mu.Unlock()
	}
}

func (v *violations) Noticef(format string, args ...any) { v.keep(format, args...) }
func (v *violations) Warnf(format string, args ...any)   { v.keep(format, args...) }
func (v *violations) Fatalf(format string, args ...any)  { v.keep(format, args...) }
func (v *violations) Errorf(format string, args ...any)  { v.keep(format, args...) }
func (v *violations) Debugf(format string, args ...any)  {}
func (v *violations) Tracef(format string, args ...any)  {}

func (v *violations) all() []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]string(nil), v.lines...)
}

// TestLockedDownNATS runs the fleet as deployed: a nats-server on the
// deploy's accounts file (deploy/kubernetes/nats/auth.conf), the producer,
// the worker and the CLI each as its own nkey user. Onboarding, an index
// job, reading a document with its chunks, a schedule set and cleared, a
// document and a collection deleted all work, and the server reports no
// permission violation; the producer's user is refused what it must not
// do (publish chunks), and so is the worker's (write an API key).
func TestLockedDownNATS(t *testing.T) {
	dir := t.TempDir()
	seeds := map[string]string{}
	for _, svc := range []string{"producer", "worker", "operator"} {
		kp, _ := nkeys.CreateUser()
		pub, _ := kp.PublicKey()
		seed, _ := kp.Seed()
		seeds[svc] = filepath.Join(dir, svc+".nk")
		if err := os.WriteFile(seeds[svc], seed, 0o600); err != nil {
			t.Fatal(err)
		}
		t.Setenv("STEVEDORE_"+strings.ToUpper(svc)+"_NKEY", pub)
	}
	t.Setenv("NATS_SYS_PASSWORD", "sys-secret")
	opts, err := server.ProcessConfigFile("../../deploy/kubernetes/nats/auth.conf")
	if err != nil {
		t.Fatal(err)
	}
	opts.Host, opts.Port, opts.JetStream, opts.StoreDir, opts.NoSigs = "127.0.0.1", -1, true, filepath.Join(dir, "js"), true
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	seen := &violations{}
	srv.SetLogger(seen, false, false)
	srv.Start()
	t.Cleanup(srv.Shutdown)
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	url := srv.ClientURL()

	sts, s3 := awstest.Start(t)
	for i := range 4 {
		s3.Put("acme-docs", fmt.Sprintf("doc%d.txt", i), strings.Repeat(fmt.Sprintf("Paragraph %d of a document. ", i), 40))
	}
	for k, v := range map[string]string{
		"AWS_ACCESS_KEY_ID": awstest.OurAccessKeyID, "AWS_SECRET_ACCESS_KEY": awstest.OurSecretKey, "AWS_SESSION_TOKEN": "",
		"AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL_STS": sts.URL, "AWS_ENDPOINT_URL_S3": s3.URL, "AWS_EC2_METADATA_DISABLED": "true",
		"AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent", "AWS_PROFILE": "",
		"STEVEDORE_PRINCIPAL_ARN": awstest.Principal, "STEVEDORE_S3_PATH_STYLE": "true", "STEVEDORE_DEV_EMULATOR_STS": "false",
		"STEVEDORE_NATS_URL": url, "STEVEDORE_OCR": "false",
	} {
		t.Setenv(k, v)
	}
	logs, out := &syncBuffer{}, &syncBuffer{}
	logOutput, stdout = logs, out
	t.Cleanup(func() { logOutput, stdout = nil, nil })

	ctx, cancel := context.WithCancel(context.Background())
	var fleet sync.WaitGroup
	defer func() { cancel(); fleet.Wait() }()
	apiAddr := freeAddr(t)
	for _, args := range [][]string{
		{"worker", "--nats-nkey", seeds["worker"], "--metrics-listen", freeAddr(t)},
		{"producer", "--nats-nkey", seeds["producer"], "--listen", apiAddr, "--metrics-listen", freeAddr(t)},
	} {
		fleet.Add(1)
		go func() {
			defer fleet.Done()
			if err := run(ctx, args); err != nil && ctx.Err() == nil {
				t.Errorf("%s: %v", args[0], err)
			}
		}()
	}

	// Onboard through the CLI, as the operator's user.
	if err := run(ctx, []string{"org", "create", "--name", "Locked", "--json", "--nats-nkey", seeds["operator"]}); err != nil {
		t.Fatal(err)
	}
	var org struct {
		OrgID      string `json:"org_id"`
		APIKey     string `json:"api_key"`
		ExternalID string `json:"external_id"`
	}
	if err := json.Unmarshal([]byte(out.String()), &org); err != nil {
		t.Fatalf("%s: %v", out, err)
	}
	const roleARN = "arn:aws:iam::" + awstest.Account + ":role/locked-reader"
	sts.SetRole(awstest.Role{ARN: roleARN, Principal: awstest.Principal, ExternalID: org.ExternalID, Buckets: []string{"acme-docs"}})
	waitReady(t, "http://"+apiAddr+"/v2/openapi.json")

	call := apiClient(t, apiAddr, org.OrgID, org.APIKey, nil)
	final := func(job map[string]any) map[string]any {
		t.Helper()
		for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(50 * time.Millisecond) {
			s := call("GET", "/v2/jobs/"+job["job_id"].(string), "", 200)
			if s["status"] != schema.JobStatusPending && s["status"] != schema.JobStatusRunning {
				return s
			}
			if time.Now().After(deadline) {
				t.Fatalf("job %v; NATS permission violations: %v", s, seen.all())
			}
		}
	}
	in := call("POST", "/v2/integrations/aws", `{"role_arn":"`+roleARN+`","buckets":["acme-docs"]}`, 201)["integration"].(map[string]any)
	if v := call("POST", "/v2/integrations/"+in["id"].(string)+"/verify", "", 200); v["integration"].(map[string]any)["status"] != "active" {
		t.Fatalf("verification: %v", v)
	}
	index := `{"bucket_name":"acme-docs","auth":{"type":"assume_role","role_arn":"` + roleARN + `","external_id":"` + org.ExternalID + `"}}`
	if s := final(call("POST", "/v2/collections/docs/index/s3", index, 201)); s["status"] != schema.JobStatusCompleted || s["files_indexed"] != float64(4) {
		t.Fatalf("index job: %v", s)
	}
	docs := call("GET", "/v2/collections/docs/documents", "", 200)["documents"].([]any)
	doc := docs[0].(map[string]any)["document_id"].(string)
	if got := call("GET", "/v2/collections/docs/documents/"+doc+"?include_chunks=true", "", 200); got["chunk_count"] == float64(0) {
		t.Fatalf("document: %v", got)
	}
	call("PUT", "/v2/collections/docs/schedule", strings.TrimSuffix(index, "}")+`,"every":"6h"}`, 200)
	call("DELETE", "/v2/collections/docs/schedule", "", 204)
	if s := final(call("DELETE", "/v2/collections/docs/documents/"+doc, "", 202)); s["status"] != schema.JobStatusCompleted {
		t.Fatalf("document delete: %v", s)
	}
	if s := final(call("DELETE", "/v2/collections/docs", "", 202)); s["status"] != schema.JobStatusCompleted {
		t.Fatalf("collection delete: %v", s)
	}
	if v := seen.all(); len(v) > 0 {
		t.Fatalf("the flow needed what the deploy's NATS users may not do:\n%s", strings.Join(v, "\n"))
	}

	// What each service must not do is refused.
	for _, c := range []struct{ user, subject string }{
		{"producer", schema.ChunkSubject(org.OrgID, "docs")},
		{"worker", "$KV." + schema.BucketRegistry + ".apikey.forged"},
	} {
		nc, err := nats.Connect(url, nkeyOption(t, seeds[c.user]), nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))
		if err != nil {
			t.Fatal(err)
		}
		if err := nc.Publish(c.subject, []byte("{}")); err != nil {
			t.Fatal(err)
		}
		_ = nc.Flush()
		nc.Close()
		refused := func() bool {
			for _, line := range seen.all() {
				if strings.Contains(line, c.subject) {
					return true
				}
			}
			return false
		}
		waitFor(t, refused)
	}
}

// nkeyOption signs in with the nkey seed in file.
func nkeyOption(t *testing.T, file string) nats.Option {
	t.Helper()
	opt, err := nats.NkeyOptionFromSeed(file)
	if err != nil {
		t.Fatal(err)
	}
	return opt
}
