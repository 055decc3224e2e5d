package policy

import (
	"bytes"
	"container/list"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/singleflight"
)

// Cache results, the result label of ephemera_policy_cache_total.
const (
	cacheHit         = "hit"         // fresh answer served from memory, no request
	cacheRevalidated = "revalidated" // stale answer confirmed by a 304
	cacheMiss        = "miss"        // full request
	cacheShared      = "shared"      // waited for an identical request in flight
)

// maxCachedBody bounds one cached answer.
const maxCachedBody = 4 << 20

// cache holds GitHub's answers to GET requests. An answer is served from
// memory while fresh (ttl); after that it is revalidated with
// If-None-Match, and a 304, which does not count against GitHub's rate
// limit, makes it fresh again. Identical concurrent requests are collapsed
// into one. A request that fails is never answered from a stale entry:
// the error goes to the caller, and the check fails closed.
type cache struct {
	ttl     time.Duration
	max     int
	results *prometheus.CounterVec

	mu      sync.Mutex
	entries map[string]*list.Element // of *cacheEntry
	lru     *list.List               // front: most recently used
	flight  singleflight.Group
	// inFlight counts the requests inside flight.Do now: the one asking
	// GitHub and those waiting for its answer.
	inFlight atomic.Int32
}

type cacheEntry struct {
	key     string
	status  int
	header  http.Header
	body    []byte
	fetched time.Time
}

func newCache(ttl time.Duration, maxEntries int, results *prometheus.CounterVec) *cache {
	return &cache{ttl: ttl, max: maxEntries, results: results, entries: map[string]*list.Element{}, lru: list.New()}
}

// transport returns a RoundTripper caching next's answers; scope separates
// the answers of different credentials (an App installation).
func (c *cache) transport(scope string, next http.RoundTripper) http.RoundTripper {
	return &cachingTransport{cache: c, scope: scope, next: next}
}

func (c *cache) lookup(key string) *cacheEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.entries[key]
	if !ok {
		return nil
	}
	c.lru.MoveToFront(el)
	return el.Value.(*cacheEntry)
}

func (c *cache) store(e *cacheEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.entries[e.key]; ok {
		el.Value = e
		c.lru.MoveToFront(el)
		return
	}
	c.entries[e.key] = c.lru.PushFront(e)
	for c.lru.Len() > c.max {
		old := c.lru.Back()
		c.lru.Remove(old)
		delete(c.entries, old.Value.(*cacheEntry).key)
	}
}

type cachingTransport struct {
	cache *cache
	scope string
	next  http.RoundTripper
}

func (t *cachingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	c := t.cache
	if req.Method != http.MethodGet || c.ttl <= 0 {
		return t.next.RoundTrip(req)
	}
	key := t.scope + " " + req.Header.Get("Accept") + " " + req.URL.String()
	if e := c.lookup(key); e != nil && time.Since(e.fetched) < c.ttl {
		c.results.WithLabelValues(cacheHit).Inc()
		return e.response(req), nil
	}
	c.inFlight.Add(1)
	v, err, shared := c.flight.Do(key, func() (any, error) { return t.fetch(req, key) })
	c.inFlight.Add(-1)
	if err != nil {
		return nil, err
	}
	if shared {
		c.results.WithLabelValues(cacheShared).Inc()
	}
	return v.(*cacheEntry).response(req), nil
}

// fetch asks GitHub, conditionally when a stale answer with an ETag is
// at hand, and stores what can be reused.
func (t *cachingTransport) fetch(req *http.Request, key string) (*cacheEntry, error) {
	c := t.cache
	old := c.lookup(key)
	out := req.Clone(req.Context())
	if old != nil && old.header.Get("ETag") != "" {
		out.Header.Set("If-None-Match", old.header.Get("ETag"))
	}
	resp, err := t.next.RoundTrip(out)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotModified && old != nil {
		e := *old
		e.fetched = time.Now()
		c.store(&e)
		c.results.WithLabelValues(cacheRevalidated).Inc()
		return &e, nil
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxCachedBody+1))
	if err != nil {
		return nil, fmt.Errorf("read github answer: %w", err)
	}
	if len(body) > maxCachedBody {
		return nil, fmt.Errorf("github answer larger than %d bytes", maxCachedBody)
	}
	e := &cacheEntry{key: key, status: resp.StatusCode, header: resp.Header.Clone(), body: body, fetched: time.Now()}
	c.results.WithLabelValues(cacheMiss).Inc()
	// A 404 is an answer too (an unprotected branch); errors are not.
	if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusNotFound {
		c.store(e)
	}
	return e, nil
}

// response builds a fresh *http.Response from the entry for req. GitHub's
// rate-limit headers are left out: they were true when the answer came,
// not now, and the client must not act on them.
func (e *cacheEntry) response(req *http.Request) *http.Response {
	h := make(http.Header, len(e.header))
	for k, v := range e.header {
		if !strings.HasPrefix(k, "X-Ratelimit-") {
			h[k] = v
		}
	}
	return &http.Response{
		Status:        fmt.Sprintf("%d %s", e.status, http.StatusText(e.status)),
		StatusCode:    e.status,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        h,
		Body:          io.NopCloser(bytes.NewReader(e.body)),
		ContentLength: int64(len(e.body)),
		Request:       req,
	}
}
