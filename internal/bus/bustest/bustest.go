// Package bustest runs real NATS servers for tests: an embedded
// nats-server with JetStream on a random port and a temporary store, and
// three-node clusters of nats-server processes — open, or secured as
// deploy/nats/node.conf is (TLS from a throw-away CA, passwords for
// clients and routes).
package bustest

import (
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/rs/zerolog"

	"github.com/ephemera-ci/ephemera/internal/bus"
)

// RunServer starts a JetStream nats-server on 127.0.0.1 at a random port,
// storing in dir (t.TempDir() when empty), and shuts it down at cleanup.
func RunServer(t testing.TB, dir string) *server.Server {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: dir, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatalf("nats server: %v", err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	return s
}

// Open starts a server with RunServer and opens a bus on it, closed at
// cleanup.
func Open(t testing.TB) (*bus.Bus, *server.Server) {
	t.Helper()
	s := RunServer(t, "")
	return Connect(t, s.ClientURL()), s
}

// Connect opens a bus on an existing server, closed at cleanup.
func Connect(t testing.TB, url string) *bus.Bus {
	t.Helper()
	b, err := bus.Open(t.Context(), bus.Config{URL: url, Log: zerolog.Nop()})
	if err != nil {
		t.Fatalf("open bus: %v", err)
	}
	t.Cleanup(b.Close)
	return b
}
