package policy

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ephemera-ci/ephemera/internal/waitfor"
)

func newTestCache(ttl time.Duration, max int) *cache {
	return newCache(ttl, max, prometheus.NewCounterVec(prometheus.CounterOpts{Name: "c"}, []string{"result"}))
}

func get(t *testing.T, rt http.RoundTripper, url string) string {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	resp, err := rt.RoundTrip(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func TestConcurrentIdenticalRequestsAreCollapsed(t *testing.T) {
	var upstream atomic.Int32
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		upstream.Add(1)
		<-release
		w.Write([]byte("answer"))
	}))
	defer srv.Close()
	c := newTestCache(time.Hour, 10)
	rt := c.transport("s", http.DefaultTransport)
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			if got := get(t, rt, srv.URL+"/x"); got != "answer" {
				t.Errorf("got %q", got)
			}
		})
	}
	waitfor.True(t, 10*time.Second, "all 10 requests in the flight", func() bool { return c.inFlight.Load() == 10 })
	close(release)
	wg.Wait()
	if n := upstream.Load(); n != 1 {
		t.Fatalf("upstream got %d requests, want 1", n)
	}
	// singleflight reports the answer as shared to every caller, the one
	// that asked included.
	if n := testutil.ToFloat64(c.results.WithLabelValues(cacheShared)); n != 10 {
		t.Errorf("%v requests shared the flight's answer, want all 10", n)
	}
}

func TestCacheIsBoundedAndScoped(t *testing.T) {
	var upstream atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		upstream.Add(1)
		fmt.Fprintf(w, "%s", r.URL.Path)
	}))
	defer srv.Close()
	c := newTestCache(time.Hour, 3)
	a, b := c.transport("a", http.DefaultTransport), c.transport("b", http.DefaultTransport)
	for i := range 5 {
		get(t, a, fmt.Sprintf("%s/%d", srv.URL, i))
	}
	if n := len(c.entries); n != 3 {
		t.Fatalf("cache holds %d entries, want at most 3", n)
	}
	before := upstream.Load()
	get(t, a, srv.URL+"/4") // still cached
	if upstream.Load() != before {
		t.Fatal("the most recent entry was evicted")
	}
	get(t, a, srv.URL+"/0") // evicted
	get(t, b, srv.URL+"/4") // another scope (installation) does not share answers
	if got := upstream.Load() - before; got != 2 {
		t.Fatalf("upstream got %d requests, want 2", got)
	}
}
