package ghactions_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/ephemera-ci/ephemera/ghactions"
	"github.com/ephemera-ci/ephemera/internal/bus/bustest"
	"github.com/ephemera-ci/ephemera/internal/config"
	"github.com/ephemera-ci/ephemera/internal/ghbudget"
	"github.com/ephemera-ci/ephemera/internal/ghclient"
	"github.com/ephemera-ci/ephemera/internal/githubfake"
	"github.com/ephemera-ci/ephemera/scaler"
)

// These tests compress GitHub's clock tenfold — its minute lasts 6 s, its
// hour 6 minutes — at GitHub's own 900 points a minute per endpoint (180
// registrations a scaled minute), so that a burst of 200 outruns the limit
// without the budget. The budget counts a minute in 61 slices and so
// tolerates a lag between admitting a request and GitHub counting it of
// under a slice: 100 ms here (1 s in real time). A 60-fold clock (17 ms
// slices) made that lag, under the race detector on a loaded machine, a
// test of the machine, not of the budget.
const (
	scale  = 10
	points = 900
)

func scaledLimits() githubfake.Limits {
	l := githubfake.GitHubLimits()
	l.TimeScale, l.PointsPerMinute = scale, points
	return l
}

// replicas builds n processes' GitHub clients against fake, each with
// its own budget on one shared bucket (nil budgets when budgeted is
// false).
func replicas(t *testing.T, fake *githubfake.Server, n int, budgeted bool) []*ghactions.Client {
	t.Helper()
	b, _ := bustest.Open(t)
	kv, err := b.KeyValue(t.Context(), ghbudget.BucketConfig())
	if err != nil {
		t.Fatal(err)
	}
	var out []*ghactions.Client
	for i := range n {
		var bud *ghbudget.Budget
		if budgeted {
			bud, err = ghbudget.New(ghbudget.Config{
				KV: kv, Replica: fmt.Sprintf("replica-%d", i),
				Minute: time.Minute / scale, Hour: time.Hour / scale, PointsPerMinute: points, MaxWait: 30 * time.Second, LeaseTTL: 10 * time.Second,
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		clients, err := ghclient.New(ghclient.Config{
			APIURL: fake.URL, Token: config.NewSecret("ghp_test"), Timeout: 10 * time.Second,
			Budget: bud, Registerer: prometheus.NewRegistry(), Log: zerolog.Nop(),
		})
		if err != nil {
			t.Fatal(err)
		}
		gh, err := ghactions.New(ghactions.Config{Clients: clients, Org: "acme"})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, gh)
	}
	return out
}

// burst registers jobs runners for waiting jobs across the replicas,
// many at once, while a flood of low-priority listings and top-up
// registrations runs on every replica until the burst is over. It
// returns the registrations that failed.
func burst(t *testing.T, ghs []*ghactions.Client, jobs int) []error {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	floodCtx, stopFlood := context.WithCancel(ctx)
	var flood sync.WaitGroup
	var floods atomic.Int64
	for i, gh := range ghs {
		for k := range 10 {
			flood.Go(func() {
				lctx := ghbudget.WithPriority(floodCtx, ghbudget.Listing)
				tctx := ghbudget.WithPriority(floodCtx, ghbudget.TopUp)
				for n := 0; floodCtx.Err() == nil; n++ {
					switch {
					case k < 2:
						_, _ = gh.ListRunners(lctx, 0)
					case k < 8:
						_, _ = gh.JobStatus(lctx, 0, "acme/app", int64(n))
					default:
						_, _ = gh.RegisterRunner(tctx, scaler.Registration{Name: fmt.Sprintf("eph-idle-%d-%d-%d", i, k, n), Labels: []string{"linux"}})
					}
					floods.Add(1)
				}
			})
		}
	}
	var errs []error
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	rctx := ghbudget.WithPriority(ctx, ghbudget.Registration)
	for j := range jobs {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			_, err := ghs[j%len(ghs)].RegisterRunner(rctx, scaler.Registration{Name: fmt.Sprintf("eph-job-%d", j), Labels: []string{"linux"}})
			if err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	stopFlood()
	flood.Wait()
	if floods.Load() == 0 {
		t.Error("the flood of low-priority calls never ran")
	}
	return errs
}

func TestABurstOfJobsUnderTheSharedBudgetMeetsNoRateLimitAndIsNotStarvedByHousekeeping(t *testing.T) {
	fake := startFake(t)
	l := scaledLimits()
	fake.SetLimits(l)
	const jobs = 200
	errs := burst(t, replicas(t, fake, 3, true), jobs)
	if len(errs) > 0 {
		t.Errorf("%d of %d registrations failed, first: %v", len(errs), jobs, errs[0])
	}
	if a := fake.RateLimitAnswers(); a.Total() != 0 {
		t.Errorf("GitHub answered %+v rate limits, want none", a)
	}
	if got := fake.MaxInFlight(); got > l.MaxConcurrent {
		t.Errorf("%d requests in flight at once, over %d", got, l.MaxConcurrent)
	}
}

// The same burst without the budget trips the stand-in's limits: the
// scenario above is one where the budget is what keeps GitHub quiet.
func TestTheSameBurstWithoutTheBudgetTripsTheLimits(t *testing.T) {
	fake := startFake(t)
	// Tighter still, so that no machine is slow enough to stay under it:
	// 5 registrations in a 10 s minute.
	l := scaledLimits()
	l.TimeScale, l.PointsPerMinute = 6, 25
	fake.SetLimits(l)
	errs := burst(t, replicas(t, fake, 3, false), 200)
	if a := fake.RateLimitAnswers(); a.Total() == 0 {
		t.Errorf("no rate-limit answers without the budget (%d registrations failed)", len(errs))
	}
	limited := 0
	for _, err := range errs {
		if _, ok := errors.AsType[*scaler.RateLimitedError](err); ok {
			limited++
		}
	}
	if limited == 0 {
		t.Error("no registration saw a rate limit without the budget")
	}
}
