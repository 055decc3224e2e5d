package config

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const autoPool = "min_idle: auto\n    idle_min: 1\n    idle_max: 8\n    target_wait: {p95: 5s}"

func TestMinIdleAutoIsParsed(t *testing.T) {
	secretsEnv(t)
	c, err := parseServe(t, strings.Replace(validDoc, "min_idle: 1", autoPool, 1))
	if err != nil {
		t.Fatal(err)
	}
	p := c.Pools[0]
	got := struct {
		Auto             bool
		MinIdle, Min, Mx int
		Target           TargetWait
	}{p.AutoIdle, p.MinIdle, p.IdleMin, p.IdleMax, p.TargetWait}
	want := got
	want.Auto, want.MinIdle, want.Min, want.Mx = true, 0, 1, 8
	want.Target = TargetWait{Quantile: 0.95, Wait: Duration(5 * time.Second)}
	if d := cmp.Diff(got, want); d != "" {
		t.Errorf("pool (-got +want):\n%s", d)
	}
	if s := p.TargetWait.String(); s != "p95: 5s" {
		t.Errorf("TargetWait.String() = %q", s)
	}
}

func TestTargetWaitAcceptsFractionalPercentiles(t *testing.T) {
	secretsEnv(t)
	c, err := parseServe(t, strings.Replace(validDoc, "min_idle: 1", strings.Replace(autoPool, "p95: 5s", "p99.9: 30s", 1), 1))
	if err != nil {
		t.Fatal(err)
	}
	if tw := c.Pools[0].TargetWait; tw.Quantile != 0.999 || tw.Wait.D() != 30*time.Second {
		t.Errorf("target_wait = %+v, want p99.9 30s", tw)
	}
}

func TestMinIdleAutoErrorsNameTheKey(t *testing.T) {
	auto := func(old, new string) func(string) string {
		return func(d string) string {
			return strings.Replace(strings.Replace(d, "min_idle: 1", autoPool, 1), old, new, 1)
		}
	}
	cases := []struct {
		name    string
		edit    func(string) string
		wantKey string
		wantMsg string
	}{
		{"min_idle neither a number nor auto", repl(`min_idle: 1`, `min_idle: automatic`), "pools[0].min_idle", "a whole number or auto"},
		{"idle_max missing", auto("    idle_max: 8\n", ""), "pools[0].idle_max", "required with min_idle: auto"},
		{"target_wait missing", auto("\n    target_wait: {p95: 5s}", ""), "pools[0].target_wait", "such as {p95: 5s}"},
		{"idle_min above idle_max", auto("idle_min: 1", "idle_min: 9"), "pools[0].idle_min", "idle_max (8)"},
		{"negative idle_min", auto("idle_min: 1", "idle_min: -1"), "pools[0].idle_min", "negative"},
		{"idle_max above max", auto("idle_max: 8", "idle_max: 11"), "pools[0].idle_max", "max (10)"},
		{"a percentile key that is no percentile", auto("p95: 5s", "q95: 5s"), "pools[0].target_wait.q95", "p50 to p99.9"},
		{"a percentile below p50", auto("p95: 5s", "p10: 5s"), "pools[0].target_wait.p10", "p50 to p99.9"},
		{"a percentile of 100", auto("p95: 5s", "p100: 5s"), "pools[0].target_wait.p100", "p50 to p99.9"},
		{"two percentiles", auto("p95: 5s", "p95: 5s, p99: 9s"), "pools[0].target_wait", "one percentile"},
		{"a wait that is no duration", auto("p95: 5s", "p95: soon"), "pools[0].target_wait.p95", "not a duration"},
		{"a negative wait", auto("p95: 5s", "p95: -5s"), "pools[0].target_wait.p95", "negative"},
		{"target_wait as a bare duration", auto("target_wait: {p95: 5s}", "target_wait: 5s"), "pools[0].target_wait", "such as {p95: 5s}"},
		{"idle_max with a fixed min_idle", repl(`min_idle: 1`, "min_idle: 1\n    idle_max: 3"), "pools[0].idle_max", "only with min_idle: auto"},
		{"target_wait with a fixed min_idle", repl(`min_idle: 1`, "min_idle: 1\n    target_wait: {p95: 5s}"), "pools[0].target_wait", "only with min_idle: auto"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			secretsEnv(t)
			_, err := parseServe(t, tc.edit(validDoc))
			var ke *KeyError
			if !errors.As(err, &ke) {
				t.Fatalf("error %v is not a *KeyError", err)
			}
			if ke.Key != tc.wantKey || !strings.Contains(ke.Problem, tc.wantMsg) {
				t.Errorf("error %q, want key %q and a message containing %q", err, tc.wantKey, tc.wantMsg)
			}
		})
	}
}
