package githubfake_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-github/v60/github"

	"github.com/ephemera-ci/ephemera/internal/githubfake"
	"github.com/ephemera-ci/ephemera/internal/waitfor"
)

const jitEndpoint = "/orgs/{org}/actions/runners/generate-jitconfig"

func TestLimitsAreOffByDefault(t *testing.T) {
	s, c := start(t)
	for i := range 30 {
		if _, _, err := jit(t, c, fmt.Sprintf("eph-off-%d", i), "linux"); err != nil {
			t.Fatalf("registration %d: %v", i, err)
		}
	}
	if a := s.RateLimitAnswers(); a.Total() != 0 {
		t.Errorf("rate-limit answers %+v without limits, want none", a)
	}
}

func TestPrimaryLimitAnswers403WithRemainingZeroAndResetsAfterTheScaledHour(t *testing.T) {
	s, c := start(t)
	// An hour of 1 s: the window resets within the test.
	s.SetLimits(githubfake.Limits{PrimaryPerHour: 3, TimeScale: 3600})
	var remaining []int
	for range 3 {
		_, resp, err := c.Actions.ListOrganizationRunners(t.Context(), "acme", nil)
		if err != nil {
			t.Fatal(err)
		}
		remaining = append(remaining, resp.Rate.Remaining)
		if resp.Header.Get("X-RateLimit-Resource") != "core" || resp.Header.Get("X-RateLimit-Used") == "" {
			t.Errorf("headers %v lack X-RateLimit-Resource: core or X-RateLimit-Used", resp.Header)
		}
	}
	if d := cmp.Diff(remaining, []int{3, 2, 1}); d != "" {
		t.Errorf("X-RateLimit-Remaining before each request counted (-got +want):\n%s", d)
	}
	_, resp, err := c.Actions.ListOrganizationRunners(t.Context(), "acme", nil)
	if _, ok := errors.AsType[*github.RateLimitError](err); !ok {
		t.Fatalf("4th request: %v, want *github.RateLimitError", err)
	}
	if resp.StatusCode != http.StatusForbidden || resp.Header.Get("X-RateLimit-Remaining") != "0" {
		t.Errorf("answer %d with remaining %q, want 403 and 0", resp.StatusCode, resp.Header.Get("X-RateLimit-Remaining"))
	}
	if a := s.RateLimitAnswers(); a.Primary != 1 || a.Secondary != 0 {
		t.Errorf("answers %+v, want one primary", a)
	}
	waitfor.True(t, 5*time.Second, "the primary window to reset", func() bool {
		_, _, err := c.Actions.ListOrganizationRunners(t.Context(), "acme", nil)
		return err == nil
	})
}

func TestPrimaryLimitIsPerInstallation(t *testing.T) {
	s, _ := start(t)
	s.SetLimits(githubfake.Limits{PrimaryPerHour: 1})
	a, b := tokenClient(t, s, "token-a"), tokenClient(t, s, "token-b")
	for _, c := range []*github.Client{a, b} {
		if _, _, err := c.Actions.ListOrganizationRunners(t.Context(), "acme", nil); err != nil {
			t.Fatalf("first request of a credential: %v", err)
		}
	}
	if _, _, err := a.Actions.ListOrganizationRunners(t.Context(), "acme", nil); err == nil {
		t.Error("second request of credential a was answered, want the primary limit")
	}
}

func TestPointsPerMinuteArePerEndpointAndWritesCostFive(t *testing.T) {
	for _, status := range []int{http.StatusForbidden, http.StatusTooManyRequests} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			s, c := start(t)
			s.SetLimits(githubfake.Limits{PointsPerMinute: 12, SecondaryStatus: status})
			for i := range 2 { // 10 points
				if _, _, err := jit(t, c, fmt.Sprintf("eph-pts-%d", i), "linux"); err != nil {
					t.Fatal(err)
				}
			}
			_, resp, err := jit(t, c, "eph-pts-2", "linux")
			if resp == nil || resp.StatusCode != status || resp.Header.Get("Retry-After") == "" {
				t.Fatalf("3rd registration: %v, want %d with Retry-After", err, status)
			}
			if resp.Header.Get("X-RateLimit-Remaining") == "0" {
				t.Error("a secondary limit answered with the primary budget at 0")
			}
			if status == http.StatusForbidden {
				ab, ok := errors.AsType[*github.AbuseRateLimitError](err)
				if !ok || ab.RetryAfter == nil || *ab.RetryAfter < time.Second || *ab.RetryAfter > time.Minute {
					t.Errorf("3rd registration: %v, want *github.AbuseRateLimitError with a Retry-After within a minute", err)
				}
			}
			// Two points left on this endpoint: GETs still pass, and another
			// endpoint has its own minute. (A fresh client: go-github refuses
			// every request of one that met a secondary limit until its
			// Retry-After.)
			c = tokenClient(t, s, "test-token")
			for range 2 {
				if _, _, err := c.Actions.ListOrganizationRunners(t.Context(), "acme", nil); err != nil {
					t.Fatalf("list runners: %v", err)
				}
			}
			if _, _, err := c.Actions.GetWorkflowJobByID(t.Context(), "acme", "app", 1); err != nil {
				if _, limited := errors.AsType[*github.AbuseRateLimitError](err); limited {
					t.Errorf("another endpoint was limited: %v", err)
				}
			}
			want := map[githubfake.Kind]int{
				{Method: "POST", Endpoint: jitEndpoint}:                              3,
				{Method: "GET", Endpoint: "/orgs/{org}/actions/runners"}:             2,
				{Method: "GET", Endpoint: "/repos/{owner}/{repo}/actions/jobs/{id}"}: 1,
			}
			if d := cmp.Diff(s.RequestsByKind(), want); d != "" {
				t.Errorf("requests by kind (-got +want):\n%s", d)
			}
			if a := s.RateLimitAnswers(); a.Secondary != 1 || a.Primary != 0 {
				t.Errorf("answers %+v, want one secondary", a)
			}
		})
	}
}

func TestPointsComeBackAsTheScaledMinuteSlides(t *testing.T) {
	s, c := start(t)
	s.SetLimits(githubfake.Limits{PointsPerMinute: 5, TimeScale: 120}) // a minute of 0.5 s
	if _, _, err := jit(t, c, "eph-slide-0", "linux"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := jit(t, c, "eph-slide-1", "linux"); err == nil {
		t.Fatal("second registration in the minute was answered")
	}
	waitfor.True(t, 5*time.Second, "the minute to slide on", func() bool {
		_, _, err := jit(t, c, "eph-slide-1", "linux")
		return err == nil
	})
}

func TestMoreThanMaxConcurrentRequestsInFlightAreRefused(t *testing.T) {
	s, c := start(t)
	s.SetLimits(githubfake.Limits{MaxConcurrent: 2})
	release := make(chan struct{})
	var held sync.WaitGroup
	held.Add(2)
	s.InjectFault(githubfake.Fault{Method: "GET", Path: "/orgs/acme/actions/runners", Times: 2, OnMatch: func() {
		held.Done()
		<-release
	}})
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() { _, _, _ = c.Actions.ListOrganizationRunners(context.Background(), "acme", nil) })
	}
	held.Wait()
	_, _, err := c.Actions.GetWorkflowJobByID(t.Context(), "acme", "app", 1)
	close(release)
	wg.Wait()
	if _, ok := errors.AsType[*github.AbuseRateLimitError](err); !ok {
		t.Errorf("a third request in flight: %v, want *github.AbuseRateLimitError", err)
	}
	if got := s.MaxInFlight(); got != 2 {
		t.Errorf("most in flight %d, want 2", got)
	}
}

func tokenClient(t *testing.T, s *githubfake.Server, token string) *github.Client {
	t.Helper()
	c := github.NewClient(nil).WithAuthToken(token)
	u, err := c.BaseURL.Parse(s.URL)
	if err != nil {
		t.Fatal(err)
	}
	c.BaseURL = u
	return c
}
