package deploy

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/stevedore-dev/stevedore/schema"
)

// TestNATSAuthConfig runs a real nats-server on the accounts file the Helm
// values include (kubernetes/nats/auth.conf), with freshly made nkeys in
// its environment as the NATS pods get them: a client without credentials
// is refused; stevedore's worker user creates the whole topology in the
// STEVEDORE account and its producer user sees it; the system account's
// user sees none of it.
func TestNATSAuthConfig(t *testing.T) {
	seeds := map[string][]byte{}
	for _, svc := range []string{"PRODUCER", "WORKER", "OPERATOR"} {
		kp, _ := nkeys.CreateUser()
		pub, _ := kp.PublicKey()
		seeds[svc], _ = kp.Seed()
		t.Setenv("STEVEDORE_"+svc+"_NKEY", pub)
	}
	t.Setenv("NATS_SYS_PASSWORD", "sys-secret")
	opts, err := server.ProcessConfigFile("kubernetes/nats/auth.conf")
	if err != nil {
		t.Fatal(err)
	}
	opts.Host, opts.Port, opts.JetStream, opts.StoreDir, opts.NoSigs, opts.NoLog = "127.0.0.1", -1, true, t.TempDir(), true, true
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(srv.Shutdown)
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("not ready")
	}
	if nc, err := nats.Connect(srv.ClientURL()); err == nil || !strings.Contains(strings.ToLower(err.Error()), "authorization") {
		if nc != nil {
			nc.Close()
		}
		t.Fatalf("anonymous connect: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	worker := nkeyJS(t, srv.ClientURL(), seeds["WORKER"])
	if err := (schema.Topology{}).WithDefaults().Ensure(ctx, worker); err != nil {
		t.Fatalf("the worker user cannot create the topology: %v", err)
	}
	producer := nkeyJS(t, srv.ClientURL(), seeds["PRODUCER"])
	if _, err := producer.Stream(ctx, schema.StreamJobs); err != nil {
		t.Fatalf("the producer user does not see JOBS: %v", err)
	}
	nc, err := nats.Connect(srv.ClientURL(), nats.UserInfo("sys", "sys-secret"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	sys, _ := jetstream.New(nc)
	if _, err := sys.Stream(ctx, schema.StreamJobs); err == nil {
		t.Fatal("the system account sees stevedore's streams")
	}
}

func nkeyJS(t *testing.T, url string, seed []byte) jetstream.JetStream {
	t.Helper()
	kp, err := nkeys.FromSeed(seed)
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	nc, err := nats.Connect(url, nats.Nkey(pub, func(nonce []byte) ([]byte, error) { return kp.Sign(nonce) }))
	if err != nil {
		t.Fatalf("nkey user: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}
