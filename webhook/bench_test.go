package webhook_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/ephemera-ci/ephemera/internal/bus/bustest"
	"github.com/ephemera-ci/ephemera/internal/config"
	"github.com/ephemera-ci/ephemera/internal/jobs"
	"github.com/ephemera-ci/ephemera/webhook"
)

const (
	benchClients    = 64
	benchDeliveries = 20000 // per variant and b.N iteration
	benchRounds     = 20    // full and bare alternate, so load from elsewhere hits both alike
)

// BenchmarkIntake measures the whole intake path: a real HTTP client and
// server on 127.0.0.1, an ~8 KB workflow_job body, signature check, parse,
// routing and a publish to JetStream on disk, answered after the PubAck,
// at 64 concurrent clients. Side by side it runs a bare handler that only
// checks the HMAC and publishes a prepared event, so full/bare-% is the
// throughput the handler's own work leaves of the floor set by HTTP and
// JetStream, as the median over adjacent pairs of rounds. Every delivery
// has its own id, so none is deduplicated.
func BenchmarkIntake(b *testing.B) {
	const secret = "bench-secret-0123456789abcdef0123456789"
	body := fixture(b, "workflow_job_queued.json")
	srv := bustest.RunServer(b, "")
	bus := bustest.Connect(b, srv.ClientURL())

	full := newHandler(b, webhook.Config{
		Secrets:   []config.Secret{config.NewSecret(secret)},
		Publisher: bus.JS,
		Log:       zerolog.New(io.Discard), // format every line, write nowhere
	})
	event, err := json.Marshal(jobs.Event{V: 1, Delivery: "72d3162e-cc78-11e3-81ab-4c9367dc0958", Action: jobs.Queued,
		JobID: 33299912345, RunID: 11946071316, RunAttempt: 1, Repository: "octo-org/hello-world", Owner: "octo-org",
		InstallationID: 57124311, Labels: []string{"self-hosted", "Linux", "X64", "small"},
		CreatedAt: time.Now(), StartedAt: time.Now(), ReceivedAt: time.Now(), Pool: "small"})
	if err != nil {
		b.Fatal(err)
	}
	bare := newBareHandler(secret, bus.JS, event)

	variants := []*benchTarget{
		{name: "full", server: httptest.NewServer(full)},
		{name: "bare", server: httptest.NewServer(bare)},
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: benchClients}}
	load := &benchLoad{client: client, body: body, signature: webhook.Sign(secret, body)}
	for _, v := range variants {
		b.Cleanup(v.server.Close)
		load.run(b, v, benchClients) // warm up: open the connections
		v.latencies, v.elapsed = nil, 0
	}

	var ratios []float64 // full throughput / bare throughput, per pair of adjacent rounds
	b.ResetTimer()
	for range b.N {
		for range benchRounds {
			var took [2]time.Duration
			for i, v := range variants {
				before := v.elapsed
				load.run(b, v, benchDeliveries/benchRounds)
				took[i] = v.elapsed - before
			}
			ratios = append(ratios, took[1].Seconds()/took[0].Seconds())
		}
	}
	b.StopTimer()

	for _, v := range variants {
		slices.Sort(v.latencies)
		b.ReportMetric(float64(len(v.latencies))/v.elapsed.Seconds(), v.name+"-deliveries/s")
		b.ReportMetric(ms(percentile(v.latencies, 0.50)), v.name+"-p50-ms")
		b.ReportMetric(ms(percentile(v.latencies, 0.99)), v.name+"-p99-ms")
	}
	// The median of the pairs resists bursts of load from other processes,
	// which can hit one round and not the next.
	slices.Sort(ratios)
	b.ReportMetric(100*ratios[len(ratios)/2], "full/bare-%")
}

type benchTarget struct {
	name      string
	server    *httptest.Server
	latencies []time.Duration
	elapsed   time.Duration
}

type benchLoad struct {
	client    *http.Client
	body      []byte
	signature string
	seq       atomic.Int64
}

// run sends n deliveries to v from benchClients goroutines and adds their
// latencies and the wall time to v.
func (l *benchLoad) run(b *testing.B, v *benchTarget, n int) {
	var (
		next atomic.Int64
		mu   sync.Mutex
		wg   sync.WaitGroup
	)
	start := time.Now()
	for range benchClients {
		wg.Go(func() {
			lat := make([]time.Duration, 0, n/benchClients+1)
			for next.Add(1) <= int64(n) {
				t0 := time.Now()
				if err := l.deliver(v.server.URL); err != nil {
					b.Error(err)
					return
				}
				lat = append(lat, time.Since(t0))
			}
			mu.Lock()
			v.latencies = append(v.latencies, lat...)
			mu.Unlock()
		})
	}
	wg.Wait()
	v.elapsed += time.Since(start)
}

func (l *benchLoad) deliver(url string) error {
	req, err := http.NewRequest(http.MethodPost, url+"/webhook", bytes.NewReader(l.body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-GitHub-Event", "workflow_job")
	req.Header.Set("X-GitHub-Delivery", fmt.Sprintf("bench-%016x", l.seq.Add(1)))
	req.Header.Set("X-Hub-Signature-256", l.signature)
	resp, err := l.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return err
	}
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

// bareHandler is the floor: read the body, check its HMAC, publish a
// prepared event and wait for the PubAck. No parsing, routing, metrics or
// logging. It is a fair floor: like the handler, it reuses body buffers
// and HMAC states from pools and decodes the signature without
// allocating, so full/bare-% measures the handler's own work, not
// allocations the floor makes and the handler avoids.
type bareHandler struct {
	pub     webhook.Publisher
	event   []byte
	subject string
	bufs    sync.Pool // *bytes.Buffer
	macs    sync.Pool // hash.Hash: HMAC-SHA256 under the secret
}

func newBareHandler(secret string, pub webhook.Publisher, event []byte) *bareHandler {
	key := []byte(secret)
	return &bareHandler{
		pub: pub, event: event, subject: jobs.Subject("small", jobs.Queued),
		bufs: sync.Pool{New: func() any { return new(bytes.Buffer) }},
		macs: sync.Pool{New: func() any { return hmac.New(sha256.New, key) }},
	}
}

func (h *bareHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	buf := h.bufs.Get().(*bytes.Buffer)
	defer func() { buf.Reset(); h.bufs.Put(buf) }()
	if _, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, 1<<20)); err != nil {
		http.Error(w, "read", http.StatusBadRequest)
		return
	}
	mac := h.macs.Get().(hash.Hash)
	mac.Reset()
	mac.Write(buf.Bytes())
	var want, got [sha256.Size]byte
	mac.Sum(want[:0])
	h.macs.Put(mac)
	sig := strings.TrimPrefix(r.Header.Get("X-Hub-Signature-256"), "sha256=")
	if len(sig) != hex.EncodedLen(sha256.Size) {
		http.Error(w, "signature", http.StatusUnauthorized)
		return
	}
	if _, err := hex.Decode(got[:], []byte(sig)); err != nil || !hmac.Equal(want[:], got[:]) {
		http.Error(w, "signature", http.StatusUnauthorized)
		return
	}
	id := r.Header.Get("X-GitHub-Delivery")
	msg := &nats.Msg{Subject: h.subject, Header: nats.Header{jetstream.MsgIDHeader: []string{id}}, Data: h.event}
	if _, err := h.pub.PublishMsg(r.Context(), msg); err != nil {
		http.Error(w, "publish", http.StatusServiceUnavailable)
		return
	}
	w.WriteHeader(http.StatusAccepted)
	_, _ = w.Write([]byte(`{"delivery":"` + id + `","pool":"small"}`))
}

func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(p*float64(len(sorted))))]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// TestBareFloorPoolsLikeTheHandler: the benchmark's floor reuses its body
// buffer and HMAC state as the handler does, so a delivery costs it far
// less memory than the body's size (an unpooled floor reads every body
// into a fresh buffer and would be unfairly slow).
func TestBareFloorPoolsLikeTheHandler(t *testing.T) {
	if raceEnabled {
		t.Skip("under -race sync.Pool drops items at random: pooling cannot be measured")
	}
	const secret = "bench-secret-0123456789abcdef0123456789"
	body := fixture(t, "workflow_job_queued.json")
	h := newBareHandler(secret, nopPublisher{}, []byte(`{}`))
	sig := webhook.Sign(secret, body)
	serveOne := func() {
		r := httptest.NewRequest(http.MethodPost, "/webhook", bytes.NewReader(body))
		r.Header.Set("X-Hub-Signature-256", sig)
		r.Header.Set("X-GitHub-Delivery", "d")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusAccepted {
			t.Fatalf("bare handler: %d", w.Code)
		}
	}
	// A request and its recorder cost the same with or without pooling;
	// measure the handler alone against that baseline.
	baseline := bytesPerRun(func() {
		r := httptest.NewRequest(http.MethodPost, "/webhook", bytes.NewReader(body))
		r.Header.Set("X-Hub-Signature-256", sig)
		r.Header.Set("X-GitHub-Delivery", "d")
		w := httptest.NewRecorder()
		w.WriteHeader(http.StatusAccepted)
		_, _ = w.Write([]byte(`{"delivery":"d","pool":"small"}`))
	})
	serveOne() // fill the pools
	perDelivery := bytesPerRun(serveOne) - baseline
	t.Logf("bare floor: %.0f bytes allocated per delivery beyond the request itself (body %d bytes)", perDelivery, len(body))
	if perDelivery > float64(len(body))/2 {
		t.Errorf("the bare floor allocates %.0f bytes per delivery for a %d-byte body: it does not pool its buffers and HMAC states", perDelivery, len(body))
	}
}

// bytesPerRun is the heap allocated per call of f, over many calls.
func bytesPerRun(f func()) float64 {
	const runs = 200
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range runs {
		f()
	}
	runtime.ReadMemStats(&after)
	return float64(after.TotalAlloc-before.TotalAlloc) / runs
}

type nopPublisher struct{}

func (nopPublisher) PublishMsg(context.Context, *nats.Msg, ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	return &jetstream.PubAck{}, nil
}
