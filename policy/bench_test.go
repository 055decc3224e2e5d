package policy_test

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ephemera-ci/ephemera/policy"
)

// BenchmarkCheckRun measures check-runs over loopback HTTP against the
// real service (real token store on an embedded JetStream, real
// go-github, the GitHub stand-in) for 100 repositories with a warm cache:
// half pull requests from a writer's fork (all four default checks), half
// pushes. Each check spends its own one-time token, minted before the
// timer starts. The cache freshness is 5s (the default is 30s), so that
// a run of a few seconds includes steady-state revalidations. It reports checks/s, p50/p99 latency and
// GitHub requests per check (and the share of those that were full
// requests, not 304s).
func BenchmarkCheckRun(b *testing.B) {
	const (
		repos   = 100
		perN    = 20000
		clients = 8
	)
	e := newEnv(b, func(c *policy.Config) { c.CacheTTL = 5 * time.Second })
	type req struct{ path, body string }
	var work []req
	for i := range repos {
		spec := compliant()
		spec.FullName = fmt.Sprintf("acme/r%03d", i)
		e.gh.SetRepo(spec)
		work = append(work,
			req{"/pull_request/check-run", prBody(spec.FullName, "dave/widgets", "main", "fix", sha)},
			req{"/push/check-run", `{"repository_name":"` + spec.FullName + `"}`})
	}
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients, MaxIdleConns: clients}}
	send := func(r req, tok string) (int, error) {
		hr, _ := http.NewRequest(http.MethodPost, e.srv.URL+r.path, strings.NewReader(r.body))
		hr.Header.Set("Authorization", "Bearer "+tok)
		hr.Header.Set("Content-Type", "application/json")
		resp, err := hc.Do(hr)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	// Warm the cache.
	for _, r := range work {
		if code, err := send(r, e.mint(b)); err != nil || code != http.StatusNoContent {
			b.Fatalf("warm-up %s: %d %v", r.body, code, err)
		}
	}
	n := b.N * perN
	toks := make([]string, n)
	for i := range toks {
		toks[i] = e.mint(b)
	}
	e.gh.ResetCalls()

	lat := make([]time.Duration, n)
	var next atomic.Int64
	var failed atomic.Int64
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				t0 := time.Now()
				code, err := send(work[i%len(work)], toks[i])
				lat[i] = time.Since(t0)
				if err != nil || code != http.StatusNoContent {
					failed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if f := failed.Load(); f > 0 {
		b.Fatalf("%d of %d checks did not pass", f, n)
	}
	calls := e.gh.Calls()
	full := 0
	for _, c := range calls {
		if c.Status != http.StatusNotModified {
			full++
		}
	}
	slices.Sort(lat)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(float64(n)/elapsed.Seconds(), "checks/s")
	b.ReportMetric(ms(lat[n/2]), "p50-ms")
	b.ReportMetric(ms(lat[n*99/100]), "p99-ms")
	b.ReportMetric(float64(len(calls))/float64(n), "github-req/check")
	b.ReportMetric(float64(full)/float64(n), "github-full-req/check")
}
