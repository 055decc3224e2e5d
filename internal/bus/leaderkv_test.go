package bus_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ephemera-ci/ephemera/internal/bus"
	"github.com/ephemera-ci/ephemera/internal/bus/bustest"
)

// A leader read answers as kv.Get does — value, revision, creation time;
// not found for a key missing, deleted or purged — through the JetStream
// API, which only the stream leader answers.
func TestLeaderReadsAnswerAsGetDoesFromTheLeader(t *testing.T) {
	b, _ := bustest.Open(t)
	ctx := t.Context()
	kv, err := b.KeyValue(ctx, jetstream.KeyValueConfig{Bucket: "leader_reads", History: 1})
	if err != nil {
		t.Fatal(err)
	}
	lr := bus.LeaderReads(b.Conn, kv)
	rev, err := kv.Create(ctx, "a", []byte("one"))
	if err != nil {
		t.Fatal(err)
	}
	if rev, err = kv.Update(ctx, "a", []byte("two"), rev); err != nil {
		t.Fatal(err)
	}
	want, err := kv.Get(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}

	// Which API each read asks, seen by a subscriber of both: a direct
	// get, which any replica answers, or a message get, which only the
	// leader answers.
	var mu sync.Mutex
	asked := map[string]int{}
	sub, err := b.Conn.Subscribe("$JS.API.>", func(m *nats.Msg) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case strings.HasPrefix(m.Subject, "$JS.API.DIRECT.GET.KV_leader_reads"):
			asked["direct"]++
		case m.Subject == "$JS.API.STREAM.MSG.GET.KV_leader_reads":
			asked["leader"]++
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe() //nolint:errcheck
	if err := b.Conn.Flush(); err != nil {
		t.Fatal(err)
	}
	got, err := lr.Get(ctx, "a")
	if err != nil {
		t.Fatalf("leader read: %v", err)
	}
	if err := b.Conn.Flush(); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Get(ctx, "a"); err != nil { // a direct get, for comparison
		t.Fatal(err)
	}
	seen := func() (leader, direct int) {
		mu.Lock()
		defer mu.Unlock()
		return asked["leader"], asked["direct"]
	}
	deadline := time.Now().Add(5 * time.Second)
	for l, d := seen(); l+d < 2 && time.Now().Before(deadline); l, d = seen() {
		time.Sleep(10 * time.Millisecond)
	}
	if l, d := seen(); l != 1 || d != 1 {
		t.Errorf("a leader read and a kv.Get asked %d message gets and %d direct gets; want 1 and 1", l, d)
	}
	if string(got.Value()) != "two" || got.Revision() != rev || got.Key() != "a" || got.Bucket() != "leader_reads" ||
		!got.Created().Equal(want.Created()) || got.Operation() != jetstream.KeyValuePut {
		t.Errorf("leader read: %q rev %d key %q bucket %q created %v op %v; want %q rev %d created %v put",
			got.Value(), got.Revision(), got.Key(), got.Bucket(), got.Created(), got.Operation(), "two", rev, want.Created())
	}

	if _, err := kv.Put(ctx, "gone", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := kv.Delete(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "purged", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := kv.Purge(ctx, "purged"); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"never", "gone", "purged"} {
		if _, err := lr.Get(ctx, key); !errors.Is(err, jetstream.ErrKeyNotFound) {
			t.Errorf("leader read of %s: %v, want ErrKeyNotFound", key, err)
		}
	}

	// Without a deadline of its own, a read is bounded all the same.
	if _, err := lr.Get(context.Background(), "a"); err != nil {
		t.Errorf("leader read without a deadline: %v", err)
	}
}
