package webhook_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ephemera-ci/ephemera/internal/config"
	"github.com/ephemera-ci/ephemera/webhook"
)

const (
	oldSecret = "old-secret-0123456789abcdef0123456789"
	newSecret = "new-secret-9876543210fedcba9876543210"
)

// testPools are the pools most tests route to, in config order.
var testPools = []config.Pool{
	{Name: "small", Labels: []string{"self-hosted", "linux", "x64", "small"}},
	{Name: "large", Labels: []string{"self-hosted", "linux", "x64", "large"}},
}

// fakePublisher stores messages in memory, acknowledging a repeated
// Nats-Msg-Id as a duplicate the way JetStream does. Its zero value is
// ready; Err makes every publish fail.
type fakePublisher struct {
	Err error

	mu   sync.Mutex
	msgs []*nats.Msg
	seen map[string]bool
}

func (p *fakePublisher) PublishMsg(ctx context.Context, msg *nats.Msg, _ ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	if p.Err != nil {
		return nil, p.Err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	id := msg.Header.Get(jetstream.MsgIDHeader)
	if p.seen[id] {
		return &jetstream.PubAck{Stream: "EPHEMERA_JOBS", Sequence: uint64(len(p.msgs)), Duplicate: true}, nil
	}
	if p.seen == nil {
		p.seen = map[string]bool{}
	}
	p.seen[id] = true
	p.msgs = append(p.msgs, msg)
	return &jetstream.PubAck{Stream: "EPHEMERA_JOBS", Sequence: uint64(len(p.msgs))}, nil
}

// Stored reports whether a message with Nats-Msg-Id id was stored.
func (p *fakePublisher) Stored(id string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.seen[id]
}

// Msgs returns the messages stored so far.
func (p *fakePublisher) Msgs() []*nats.Msg {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]*nats.Msg(nil), p.msgs...)
}

func newHandler(t testing.TB, cfg webhook.Config) *webhook.Handler {
	t.Helper()
	if cfg.Secrets == nil {
		cfg.Secrets = []config.Secret{config.NewSecret(newSecret), config.NewSecret(oldSecret)}
	}
	if cfg.Pools == nil {
		cfg.Pools = testPools
	}
	h, err := webhook.New(cfg)
	if err != nil {
		t.Fatalf("webhook.New: %v", err)
	}
	return h
}

func fixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// editJSON decodes body, lets edit change it and encodes it again.
func editJSON(t testing.TB, body []byte, edit func(p map[string]any)) []byte {
	t.Helper()
	var p map[string]any
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatal(err)
	}
	edit(p)
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// withLabels returns the queued fixture with the job's labels replaced.
func withLabels(t testing.TB, labels ...string) []byte {
	t.Helper()
	return editJSON(t, fixture(t, "workflow_job_queued.json"), func(p map[string]any) {
		p["workflow_job"].(map[string]any)["labels"] = labels
	})
}

var deliverySeq atomic.Int64

// newDeliveryID returns a GUID-like delivery id no other request uses.
func newDeliveryID() string {
	return "72d3162e-cc78-11e3-81ab-" + strconv.FormatInt(100000000000+deliverySeq.Add(1), 10)
}

// newDelivery builds a request as GitHub sends it: POST, JSON, the event
// and a fresh delivery id, signed with secret.
func newDelivery(event string, body []byte, secret string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/webhook", bytes.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("User-Agent", "GitHub-Hookshot/5a6d1c2")
	r.Header.Set("X-GitHub-Event", event)
	r.Header.Set("X-GitHub-Delivery", newDeliveryID())
	r.Header.Set("X-GitHub-Hook-ID", "429180301")
	r.Header.Set("X-Hub-Signature-256", webhook.Sign(secret, body))
	return r
}

// serve runs r through h and returns the status and the decoded JSON body.
func serve(t testing.TB, h http.Handler, r *http.Request) (int, map[string]any) {
	t.Helper()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("answer's content type = %q, want application/json", ct)
	}
	var body map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
		t.Fatalf("answer %d is not JSON: %q", w.Code, w.Body.String())
	}
	return w.Code, body
}

func newRecorder() *httptest.ResponseRecorder { return httptest.NewRecorder() }

func subjects(msgs []*nats.Msg) []string {
	var s []string
	for _, m := range msgs {
		s = append(s, m.Subject)
	}
	return s
}
