// Package natstest starts a real nats-server with JetStream inside a test
// process, with its store under t.TempDir(), and stops it when the test ends.
package natstest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/stevedore-dev/stevedore/schema"
)

// Start runs an in-process JetStream server on a random loopback port, creates
// the stevedore topology, and returns the server and a connected client.
// configure, if any, changes the server's options first (a limit to test).
func Start(t testing.TB, configure ...func(*server.Options)) (*server.Server, *nats.Conn, jetstream.JetStream) {
	t.Helper()
	srv, nc, js, stop, err := Run(t.TempDir(), configure...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := (schema.Topology{}).Ensure(ctx, js); err != nil {
		t.Fatal(err)
	}
	return srv, nc, js
}

// Run starts an in-process JetStream server storing under dir, on a random
// loopback port, and connects to it; stop closes the connection and shuts
// the server down. It creates no topology (examples show that step), and
// needs no *testing.T, so Example functions use it too.
func Run(dir string, configure ...func(*server.Options)) (srv *server.Server, nc *nats.Conn, js jetstream.JetStream, stop func(), err error) {
	opts := &server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: dir, NoSigs: true, NoLog: true}
	for _, c := range configure {
		c(opts)
	}
	srv, err = server.NewServer(opts)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		return nil, nil, nil, nil, errors.New("nats-server not ready")
	}
	if nc, err = nats.Connect(srv.ClientURL()); err != nil {
		srv.Shutdown()
		return nil, nil, nil, nil, err
	}
	if js, err = schema.NewJetStream(nc); err != nil {
		nc.Close()
		srv.Shutdown()
		return nil, nil, nil, nil, err
	}
	return srv, nc, js, func() { nc.Close(); srv.Shutdown() }, nil
}
