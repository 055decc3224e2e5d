package webhook_test

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ephemera-ci/ephemera/internal/bus/bustest"
	"github.com/ephemera-ci/ephemera/internal/waitfor"
	"github.com/ephemera-ci/ephemera/webhook"
)

// TestSlowBodiesCostNoMemoryAndDelayNoDelivery opens 200 connections that
// each declare a 1 MiB body and then send it one byte a second (a
// slowloris). The heap grows by at most 16 MiB while all 200 are being
// read — the buffer follows the bytes that arrive, never Content-Length —
// and a valid delivery sent meanwhile gets its 202 within 2 s: a usual
// delivery needs no slot, so it never waits behind the slow ones (they are
// all still being read when it is answered).
func TestSlowBodiesCostNoMemoryAndDelayNoDelivery(t *testing.T) {
	const clients = 200
	b, _ := bustest.Open(t)
	reg := prometheus.NewRegistry()
	h := newHandler(t, webhook.Config{Publisher: b.JS, Registerer: reg, MaxBody: 1 << 20, BodyTimeout: time.Minute})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)

	before := heapAfterGC()
	conns := make([]net.Conn, clients)
	for i := range conns {
		conns[i] = startSlowBody(t, srv.Listener.Addr().String(), 1<<20)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Go(func() { dripOneByteASecond(c, stop) })
	}
	t.Cleanup(func() {
		close(stop)
		wg.Wait()
		for _, c := range conns {
			c.Close()
		}
	})
	waitfor.True(t, 30*time.Second, "all 200 slow bodies being read", func() bool {
		return gauge(t, reg, "ephemera_webhook_bodies", "reading") == clients
	})

	grown := int64(heapAfterGC()) - int64(before)
	t.Logf("heap grew by %.1f MiB with %d slow bodies being read", float64(grown)/(1<<20), clients)
	if grown > 16<<20 {
		t.Errorf("heap grew by %d bytes with %d slow bodies of 1 byte a second, want at most 16 MiB", grown, clients)
	}

	body := fixture(t, "workflow_job_queued.json")
	req, err := http.NewRequest(http.MethodPost, srv.URL, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header = newDelivery("workflow_job", body, newSecret).Header
	client := &http.Client{Timeout: 2 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("valid delivery during the slow bodies: %v (want its 202 within 2 s)", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("valid delivery during the slow bodies: status %d, want 202", resp.StatusCode)
	}
	if n := gauge(t, reg, "ephemera_webhook_bodies", "reading"); n != clients {
		t.Errorf("after the valid delivery's 202, %v bodies are being read, want all %d slow ones still", n, clients)
	}
}

// TestSlowBodyIsAnswered408AtItsDeadline: a body that has not arrived
// within BodyTimeout is answered 408, so a slow client holds its
// connection only that long.
func TestSlowBodyIsAnswered408AtItsDeadline(t *testing.T) {
	h := newHandler(t, webhook.Config{Publisher: &fakePublisher{}, BodyTimeout: 200 * time.Millisecond})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	c := startSlowBody(t, srv.Listener.Addr().String(), 1000)
	t.Cleanup(func() { c.Close() })
	if err := c.SetReadDeadline(time.Now().Add(30 * time.Second)); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer to a body that stopped: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestTimeout {
		t.Errorf("status = %d, want 408", resp.StatusCode)
	}
}

// TestLargeBodiesWaitForASlot: with MaxBodies 1, a large body that stalls
// holds the one slot; a second large, valid delivery waits for it (and is
// not answered meanwhile), and is stored once the first goes away.
func TestLargeBodiesWaitForASlot(t *testing.T) {
	b, _ := bustest.Open(t)
	reg := prometheus.NewRegistry()
	h := newHandler(t, webhook.Config{Publisher: b.JS, Registerer: reg, MaxBodies: 1, BodyTimeout: time.Minute})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)

	stalled := startSlowBody(t, srv.Listener.Addr().String(), 80<<10)
	t.Cleanup(func() { stalled.Close() })
	if _, err := stalled.Write(bytes.Repeat([]byte(" "), 40<<10)); err != nil {
		t.Fatal(err)
	}
	waitfor.True(t, 10*time.Second, "the stalled large body to hold the slot", func() bool {
		return gauge(t, reg, "ephemera_webhook_body_slots_in_use", "") == 1
	})

	body := editJSON(t, fixture(t, "workflow_job_queued.json"), func(p map[string]any) {
		p["padding"] = strings.Repeat("x", 60<<10)
	})
	answered := make(chan int, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodPost, srv.URL, bytes.NewReader(body))
		req.Header = newDelivery("workflow_job", body, newSecret).Header
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			answered <- 0
			return
		}
		resp.Body.Close()
		answered <- resp.StatusCode
	}()
	waitfor.True(t, 10*time.Second, "the second large body to wait for a slot", func() bool {
		return gauge(t, reg, "ephemera_webhook_bodies", "waiting") == 1
	})
	select {
	case s := <-answered:
		t.Fatalf("second large body answered %d while the only slot was held", s)
	default:
	}
	stalled.Close()
	if s := <-answered; s != http.StatusAccepted {
		t.Errorf("second large body: status %d once the slot was free, want 202", s)
	}
}

// startSlowBody sends a delivery's headers declaring a body of declared
// bytes, and its first byte.
func startSlowBody(t *testing.T, addr string, declared int) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	_, err = fmt.Fprintf(c, "POST /webhook HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"+
		"X-GitHub-Event: workflow_job\r\nX-GitHub-Delivery: %s\r\nX-Hub-Signature-256: sha256=00\r\n"+
		"Content-Length: %d\r\n\r\n{", addr, newDeliveryID(), declared)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func dripOneByteASecond(c net.Conn, stop <-chan struct{}) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
			if _, err := c.Write([]byte(" ")); err != nil {
				return
			}
		}
	}
}

func heapAfterGC() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// gauge reads a gauge from reg: the series whose only label value is
// label, or the unlabelled one when label is empty.
func gauge(t *testing.T, reg *prometheus.Registry, name, label string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if label == "" && len(m.GetLabel()) == 0 || len(m.GetLabel()) == 1 && m.GetLabel()[0].GetValue() == label {
				return m.GetGauge().GetValue()
			}
		}
	}
	return 0
}
