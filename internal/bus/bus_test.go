package bus_test

import (
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/ephemera-ci/ephemera/internal/bus"
	"github.com/ephemera-ci/ephemera/internal/bus/bustest"
	"github.com/ephemera-ci/ephemera/internal/jobs"
	"github.com/ephemera-ci/ephemera/internal/syncbuf"
)

func TestEmbeddedServerKeepsTheStreamOnDisk(t *testing.T) {
	dir := t.TempDir()
	open := func() *bus.Bus {
		b, err := bus.Open(t.Context(), bus.Config{StoreDir: dir, DuplicateWindow: time.Minute, Log: zerolog.Nop()})
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		return b
	}
	b := open()
	if err := b.Ready(t.Context()); err != nil {
		t.Fatalf("Ready: %v", err)
	}
	if b.ClientURL() != "" {
		t.Errorf("ClientURL() = %q for an in-process server, want empty", b.ClientURL())
	}
	msg := nats.NewMsg(jobs.Subject("small", jobs.Queued))
	msg.Header.Set(jetstream.MsgIDHeader, "delivery-1")
	msg.Data = []byte(`{}`)
	for range 2 {
		if _, err := b.JS.PublishMsg(t.Context(), msg); err != nil {
			t.Fatal(err)
		}
	}
	b.Close()

	b = open()
	defer b.Close()
	s, err := b.JS.Stream(t.Context(), jobs.Stream)
	if err != nil {
		t.Fatal(err)
	}
	info, _ := s.Info(t.Context())
	if info.State.Msgs != 1 {
		t.Errorf("stream holds %d messages after a duplicate and a restart, want 1", info.State.Msgs)
	}
	if info.Config.Storage != jetstream.FileStorage || info.Config.Duplicates != time.Minute {
		t.Errorf("stream config = storage %v, duplicates %v", info.Config.Storage, info.Config.Duplicates)
	}
}

func TestEmbeddedServerListensWhenAsked(t *testing.T) {
	b, err := bus.Open(t.Context(), bus.Config{StoreDir: t.TempDir(), Listen: "127.0.0.1:0", Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	nc, err := nats.Connect(b.ClientURL())
	if err != nil {
		t.Fatalf("connect to %q: %v", b.ClientURL(), err)
	}
	nc.Close()
}

func TestOpenIsIdempotentAndUpdatesTheStream(t *testing.T) {
	s := bustest.RunServer(t, "")
	for _, window := range []time.Duration{time.Hour, 2 * time.Hour} {
		b, err := bus.Open(t.Context(), bus.Config{URL: s.ClientURL(), DuplicateWindow: window, Log: zerolog.Nop()})
		if err != nil {
			t.Fatal(err)
		}
		st, _ := b.JS.Stream(t.Context(), jobs.Stream)
		if got := st.CachedInfo().Config.Duplicates; got != window {
			t.Errorf("duplicate window = %v, want %v", got, window)
		}
		b.Close()
	}
}

func TestReadyReflectsTheConnection(t *testing.T) {
	b, s := bustest.Open(t)
	if err := b.Ready(t.Context()); err != nil {
		t.Fatalf("Ready with the server up: %v", err)
	}
	s.Shutdown()
	deadline := time.Now().Add(5 * time.Second)
	for b.Ready(t.Context()) == nil {
		if time.Now().After(deadline) {
			t.Fatal("Ready still nil 5s after the server stopped")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestKeyValueUsesTheBusReplicas(t *testing.T) {
	b, _ := bustest.Open(t)
	kv, err := b.KeyValue(t.Context(), jetstream.KeyValueConfig{Bucket: "test_bucket", TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	st, _ := kv.Status(t.Context())
	if st.TTL() != time.Minute || st.BackingStore() != "JetStream" {
		t.Errorf("bucket status: ttl %v, store %s", st.TTL(), st.BackingStore())
	}
}

// TestThreeNodeClusterKeepsTheStreamThroughANodeRestart runs the cluster
// of deploy/nats/node.conf: TLS and passwords for clients and routes.
func TestThreeNodeClusterKeepsTheStreamThroughANodeRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs a three-node nats-server cluster")
	}
	c := bustest.StartSecureCluster(t, 3)
	cfg := c.BusConfig()
	cfg.Replicas = 3
	b, err := bus.Open(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	publish := func(id string) {
		t.Helper()
		msg := nats.NewMsg(jobs.Subject("small", jobs.Queued))
		msg.Header.Set(jetstream.MsgIDHeader, id)
		deadline := time.Now().Add(20 * time.Second)
		for {
			_, err := b.JS.PublishMsg(t.Context(), msg)
			if err == nil {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("publish %s: %v", id, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	publish("a")
	c.Restart(1)
	publish("b")
	publish("a") // a duplicate, across the restart
	s, _ := b.JS.Stream(t.Context(), jobs.Stream)
	info, _ := s.Info(t.Context())
	if info.Config.Replicas != 3 || info.State.Msgs != 2 {
		t.Errorf("stream: replicas %d, %d messages; want 3 replicas, 2 messages", info.Config.Replicas, info.State.Msgs)
	}
}

// A subscription too slow for its messages drops some; the connection
// says so in the log, with the subject, instead of losing them silently.
func TestASlowConsumerIsLogged(t *testing.T) {
	var logged syncbuf.Buffer
	b, err := bus.Open(t.Context(), bus.Config{StoreDir: t.TempDir(), Log: zerolog.New(&logged)})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	release := make(chan struct{})
	sub, err := b.Conn.Subscribe("slow.test", func(*nats.Msg) { <-release })
	if err != nil {
		t.Fatal(err)
	}
	defer close(release)
	if err := sub.SetPendingLimits(2, -1); err != nil {
		t.Fatal(err)
	}
	for range 10 {
		if err := b.Conn.Publish("slow.test", []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Conn.Flush(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logged.String(), `"subject":"slow.test"`) {
		if time.Now().After(deadline) {
			t.Fatalf("no slow-consumer log for slow.test; log: %s", logged.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(logged.String(), "slow consumer") {
		t.Errorf("log does not name the slow consumer: %s", logged.String())
	}
}
