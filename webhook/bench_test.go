package webhook_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
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
	bare := &bareHandler{key: []byte(secret), pub: bus.JS, event: event, subject: jobs.Subject("small", jobs.Queued)}

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
// logging.
type bareHandler struct {
	key     []byte
	pub     webhook.Publisher
	event   []byte
	subject string
}

func (h *bareHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
	if err != nil {
		http.Error(w, "read", http.StatusBadRequest)
		return
	}
	mac := hmac.New(sha256.New, h.key)
	mac.Write(body)
	got, err := hex.DecodeString(strings.TrimPrefix(r.Header.Get("X-Hub-Signature-256"), "sha256="))
	if err != nil || !hmac.Equal(mac.Sum(nil), got) {
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
