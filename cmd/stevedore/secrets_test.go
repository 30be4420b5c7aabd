package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/scripts/stack"
	"github.com/stevedore-dev/stevedore/worker/creds/awstest"
)

// syncBuffer is a bytes.Buffer safe for the concurrent writers of a run.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestNoSecretInLogsBodiesMetricsOrMessages runs the real `stevedore dev`
// wiring in-process against the fake STS and S3, onboards and verifies a
// role, indexes through it and through static keys, provokes refusals, and
// then scans everything the run emitted — logs, every API response body, the
// /metrics page and every NATS message published (captured as published, so
// work-queue messages count too) — for every secret and session credential
// used. It finds none.
func TestNoSecretInLogsBodiesMetricsOrMessages(t *testing.T) {
	st, s3 := awstest.Start(t)
	for i := 0; i < 5; i++ {
		s3.Put("acme-docs", fmt.Sprintf("doc%d.txt", i), strings.Repeat(fmt.Sprintf("Paragraph %d of a document. ", i), 50))
	}
	kek := []byte("kek-for-the-secret-scan-test-32b")
	const staticKeyID, staticSecret = "AKIASTATICSCANTEST01", "static-secret-for-the-scan-test/0001"
	s3.AllowStatic(staticKeyID, "acme-docs")
	for k, v := range map[string]string{
		"AWS_ACCESS_KEY_ID": awstest.OurAccessKeyID, "AWS_SECRET_ACCESS_KEY": awstest.OurSecretKey, "AWS_SESSION_TOKEN": "",
		"AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL_STS": st.URL, "AWS_ENDPOINT_URL_S3": s3.URL, "AWS_EC2_METADATA_DISABLED": "true",
		"AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent", "AWS_PROFILE": "",
		"STEVEDORE_KEK": hex.EncodeToString(kek), "STEVEDORE_PRINCIPAL_ARN": awstest.Principal, "STEVEDORE_S3_PATH_STYLE": "true",
		"STEVEDORE_DEV_EMULATOR_STS": "false", "STEVEDORE_LOG_LEVEL": "debug",
	} {
		t.Setenv(k, v)
	}
	logs, out := &syncBuffer{}, &syncBuffer{}
	logOutput, stdout = logs, out
	t.Cleanup(func() { logOutput, stdout = nil, nil })

	natsAddr, apiAddr, metricsAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"dev", "--data", t.TempDir(), "--nats-listen", natsAddr, "--listen", apiAddr, "--metrics-listen", metricsAddr})
	}()
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			cancel()
			if err := <-done; err != nil {
				t.Errorf("stevedore dev: %v", err)
			}
		}
	}
	defer stop()
	waitReady(t, "http://"+metricsAddr+"/readyz")

	// Capture every message as it is published.
	nc, err := nats.Connect("nats://" + natsAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	var msgsMu sync.Mutex
	var msgs []*nats.Msg
	if _, err := nc.Subscribe(">", func(m *nats.Msg) { msgsMu.Lock(); msgs = append(msgs, m); msgsMu.Unlock() }); err != nil {
		t.Fatal(err)
	}
	_ = nc.Flush()

	// Onboard through the CLI.
	var org struct{ OrgID, APIKey, ExternalID string }
	out.mu.Lock()
	out.b.Reset()
	out.mu.Unlock()
	if err := run(ctx, []string{"org", "create", "--name", "Scan", "--json", "--nats-url", "nats://" + natsAddr}); err != nil {
		t.Fatal(err)
	}
	var created map[string]string
	_ = json.Unmarshal([]byte(out.String()), &created)
	org.OrgID, org.APIKey, org.ExternalID = created["org_id"], created["api_key"], created["external_id"]
	const roleARN = "arn:aws:iam::" + awstest.Account + ":role/scan-reader"
	st.SetRole(awstest.Role{ARN: roleARN, Principal: awstest.Principal, ExternalID: org.ExternalID, Buckets: []string{"acme-docs"}})

	var bodies strings.Builder
	call := apiClient(t, apiAddr, org.OrgID, org.APIKey, &bodies)
	in := call("POST", "/v2/integrations/aws", `{"role_arn":"`+roleARN+`","buckets":["acme-docs"]}`, 201)["integration"].(map[string]any)
	v := call("POST", "/v2/integrations/"+in["id"].(string)+"/verify", "", 200)
	if v["integration"].(map[string]any)["status"] != "active" {
		t.Fatalf("verification: %v", v)
	}
	roleJob := call("POST", "/v2/collections/docs/index/s3", `{"bucket_name":"acme-docs","auth":{"type":"assume_role","role_arn":"`+roleARN+`","external_id":"`+org.ExternalID+`"}}`, 201)
	staticJob := call("POST", "/v2/collections/static/index/s3", `{"bucket_name":"acme-docs","aws_access_key_id":"`+staticKeyID+`","aws_secret_access_key":"`+staticSecret+`"}`, 201)
	call("POST", "/v2/collections/docs/index/s3", `{"bucket_name":"acme-docs","auth":{"type":"assume_role","role_arn":"`+roleARN+`","external_id":"cap_org_000000000000000000000000"}}`, 403)
	call("POST", "/v2/collections/docs/index/s3", `{"bucket_name":"acme-docs","aws_access_key_id":"`+staticKeyID+`"}`, 422)
	for _, job := range []map[string]any{roleJob, staticJob} {
		deadline := time.Now().Add(60 * time.Second)
		for {
			s := call("GET", "/v2/jobs/"+job["job_id"].(string), "", 200)
			if s["status"] == schema.JobStatusCompleted && s["files_indexed"] == float64(5) {
				break
			}
			if s["status"] == schema.JobStatusFailed || time.Now().After(deadline) {
				t.Fatalf("job %v", s)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	call("GET", "/v2/integrations", "", 200)
	resp, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	_ = nc.Flush()
	stop()

	secrets := map[string]string{"our secret key": awstest.OurSecretKey, "API key": org.APIKey, "static secret": staticSecret,
		"KEK (hex)": hex.EncodeToString(kek), "KEK (raw)": string(kek)}
	sessions := st.Sessions()
	if len(sessions) < 2 {
		t.Fatalf("only %d STS sessions were issued", len(sessions))
	}
	for i, s := range sessions {
		secrets[fmt.Sprintf("session %d secret", i)] = s.SecretAccessKey
		secrets[fmt.Sprintf("session %d token", i)] = s.Token
		secrets[fmt.Sprintf("session %d access key id", i)] = s.AccessKeyID
	}
	msgsMu.Lock()
	var published strings.Builder
	for _, m := range msgs {
		published.WriteString(m.Subject + " " + string(m.Data) + "\n")
	}
	n := len(msgs)
	msgsMu.Unlock()
	sources := map[string]string{"logs": logs.String(), "API bodies": bodies.String(), "metrics": string(metrics), "NATS messages": published.String()}
	for src, text := range sources {
		for name, secret := range secrets {
			if strings.Contains(text, secret) {
				t.Errorf("%s contain the %s", src, name)
			}
		}
	}
	// The ExternalId is not a secret in AWS's model, but it stays out of
	// logs, metrics and messages other than the registry's own org record
	// (written to $KV.<registry>.org.<id>, read back through _INBOX replies).
	for _, line := range strings.Split(published.String(), "\n") {
		orgRecord := strings.HasPrefix(line, "$KV."+schema.BucketRegistry+".org.") ||
			(strings.HasPrefix(line, "_INBOX.") && strings.Contains(line, `{"id":"`+org.OrgID+`","name":"Scan","external_id"`))
		if strings.Contains(line, org.ExternalID) && !orgRecord {
			t.Errorf("a message carries the ExternalId: %.200s", line)
		}
	}
	if strings.Contains(logs.String(), org.ExternalID) || strings.Contains(string(metrics), org.ExternalID) {
		t.Error("logs or metrics contain the ExternalId")
	}
	t.Logf("scanned %d KiB of logs, %d KiB of API bodies, %d KiB of metrics and %d NATS messages for %d secrets: none found",
		len(sources["logs"])>>10, len(sources["API bodies"])>>10, len(metrics)>>10, n, len(secrets))
}

// apiClient calls the API at addr as org with key and returns the decoded
// answer; a transport error or another status than want fails t. Every
// answer's body is kept in bodies, when given.
func apiClient(t *testing.T, addr, orgID, key string, bodies *strings.Builder) func(method, path, body string, want int) map[string]any {
	return func(method, path, body string, want int) map[string]any {
		t.Helper()
		req, _ := http.NewRequest(method, "http://"+addr+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("X-Organization-ID", orgID)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if bodies != nil {
			bodies.Write(b)
		}
		if resp.StatusCode != want {
			t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, b)
		}
		var v map[string]any
		_ = json.Unmarshal(b, &v)
		return v
	}
}

func waitReady(t *testing.T, url string) {
	t.Helper()
	if err := stack.WaitOK(url, 30*time.Second); err != nil {
		t.Fatal(err)
	}
}

// A NATS URL with a password in the environment is never printed as a
// flag's default: not by -h, not after a mistyped flag (both go to stderr,
// and so into pod logs).
func TestFlagDefaultsHideEnvironmentSecrets(t *testing.T) {
	t.Setenv("STEVEDORE_NATS_URL", "nats://alice:s3cr3t@127.0.0.1:4222")
	for _, args := range [][]string{{"worker", "-h"}, {"worker", "--no-such-flag"}, {"producer", "-nats-url"}} {
		var out bytes.Buffer
		f := newFlags(args[0])
		f.SetOutput(&out)
		addNATSFlags(f)
		_ = f.Parse(args[1:])
		if strings.Contains(out.String(), "s3cr3t") || strings.Contains(out.String(), "alice") {
			t.Fatalf("%v printed the secret:\n%s", args, out.String())
		}
		if !strings.Contains(out.String(), "nats-url") {
			t.Fatalf("%v printed no flags:\n%s", args, out.String())
		}
	}
}
