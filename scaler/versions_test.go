package scaler_test

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/ephemera-ci/ephemera/internal/githubfake"
	"github.com/ephemera-ci/ephemera/internal/syncbuf"
	"github.com/ephemera-ci/ephemera/internal/waitfor"
	"github.com/ephemera-ci/ephemera/scaler"
	"github.com/ephemera-ci/ephemera/scaler/scalertest"
)

// imagedProv is the in-memory provisioner whose pools' images pin runner
// versions, as lxdprov reads them from the images' properties.
type imagedProv struct {
	*scalertest.Provisioner
	mu       sync.Mutex
	versions map[string]string
}

func (p *imagedProv) RunnerVersions(context.Context) (map[string]string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[string]string{}
	for k, v := range p.versions {
		out[k] = v
	}
	return out, nil
}

func (p *imagedProv) pin(pool, v string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.versions[pool] = v
}

func poolStatus(t *testing.T, e *env) scaler.PoolStatus {
	t.Helper()
	st, err := scaler.ReadStatus(context.Background(), e.bus.JS, e.pools)
	if err != nil {
		t.Fatal(err)
	}
	return st[0]
}

func TestAnImagePinningAnOlderRunnerThanGitHubListsIsReported(t *testing.T) {
	e := newEnv(t, pool("small", 0, 2))
	prov := &imagedProv{Provisioner: e.prov, versions: map[string]string{"small": "2.320.0"}}
	var logs syncbuf.Buffer
	reg := prometheus.NewRegistry()
	if err := reg.Register(scaler.NewStatusCollector(e.bus.JS, e.pools, zerolog.Nop())); err != nil {
		t.Fatal(err)
	}
	e.start(e.config(func(c *scaler.Config) {
		c.Provisioner, c.VersionCheckInterval, c.Log = prov, 300*time.Millisecond, zerolog.New(&logs)
	}))

	waitfor.True(t, 10*time.Second, "the status to report the pool's runner outdated", func() bool {
		return poolStatus(t, e).RunnerOutdated
	})
	st := poolStatus(t, e)
	if st.RunnerVersion != "2.320.0" || st.LatestRunnerVersion != githubfake.DefaultRunnerVersion || st.VersionCheckedAt.IsZero() {
		t.Errorf("status: runner %q, latest %q, checked at %s; want 2.320.0, %s, a time", st.RunnerVersion, st.LatestRunnerVersion, st.VersionCheckedAt, githubfake.DefaultRunnerVersion)
	}
	if v := metricSum(t, reg, "ephemera_runner_version_outdated", map[string]string{"pool": "small"}); v != 1 {
		t.Errorf("ephemera_runner_version_outdated{pool=small} = %v, want 1", v)
	}
	if v := metricSum(t, reg, "ephemera_runner_version_info", map[string]string{"pool": "small", "pinned": "2.320.0", "latest": githubfake.DefaultRunnerVersion}); v != 1 {
		t.Errorf("ephemera_runner_version_info{pool=small,pinned=2.320.0,latest=%s} = %v, want 1", githubfake.DefaultRunnerVersion, v)
	}
	if l := logs.String(); !strings.Contains(l, `"runner_version":"2.320.0"`) || !strings.Contains(l, "older than the newest GitHub lists") {
		t.Errorf("no warning naming the pool's runner version in the log:\n%s", l)
	}

	// The image is rebuilt with the newest runner: the warning clears.
	prov.pin("small", githubfake.DefaultRunnerVersion)
	waitfor.True(t, 10*time.Second, "the status to report the rebuilt image current", func() bool {
		st := poolStatus(t, e)
		return st.RunnerVersion == githubfake.DefaultRunnerVersion && !st.RunnerOutdated
	})
	if v := metricSum(t, reg, "ephemera_runner_version_outdated", map[string]string{"pool": "small"}); v != 0 {
		t.Errorf("after the rebuild: ephemera_runner_version_outdated{pool=small} = %v, want 0", v)
	}
}

func TestGitHubIsAskedForTheNewestRunnerOnceADayByTheLeaderOnly(t *testing.T) {
	e := newEnv(t, pool("small", 0, 2))
	prov := &imagedProv{Provisioner: e.prov, versions: map[string]string{"small": "2.320.0"}}
	cfg := e.config(func(c *scaler.Config) { c.Provisioner = prov })
	a, b := e.start(cfg), e.start(cfg)
	const downloads = "/orgs/acme/actions/runners/downloads"
	waitfor.True(t, 10*time.Second, "the first check", func() bool { return poolStatus(t, e).LatestRunnerVersion != "" })
	// Many reconcile passes later, and after the leader changed, GitHub
	// was still asked once.
	since := poolStatus(t, e).UpdatedAt
	waitfor.True(t, 10*time.Second, "ten more reconcile passes", func() bool {
		return poolStatus(t, e).UpdatedAt.Sub(since) > 10*cfg.Interval
	})
	leader, other := a, b
	if metricSum(t, b.reg, "ephemera_scaler_leader", nil) == 1 {
		leader, other = b, a
	}
	leader.stop()
	since = poolStatus(t, e).UpdatedAt
	waitfor.True(t, 10*time.Second, "the other replica to lead and reconcile", func() bool {
		return metricSum(t, other.reg, "ephemera_scaler_leader", nil) == 1 && poolStatus(t, e).UpdatedAt.Sub(since) > 5*cfg.Interval
	})
	if n := e.fake.CountCalls(http.MethodGet, downloads); n != 1 {
		t.Errorf("GET %s called %d times by two replicas over many passes and a change of leader; want once a day", downloads, n)
	}
}

func TestCompareRunnerVersions(t *testing.T) {
	for _, tc := range []struct {
		name, a, b string
		want       int
		ok         bool
	}{
		{"equal versions are equal", "2.321.0", "2.321.0", 0, true},
		{"versions compare as numbers, not as text", "2.99.0", "2.100.0", -1, true},
		{"a patch release is newer", "2.321.1", "2.321.0", 1, true},
		{"a stand-in suffix is ignored", "2.321.0-standin", "2.321.0", 0, true},
		{"a leading v is ignored", "v2.320.0", "2.321.0", -1, true},
		{"a missing part counts as zero", "2.321", "2.321.0", 0, true},
		{"an empty version does not compare", "", "2.321.0", 0, false},
		{"a version that is no dotted number does not compare", "latest", "2.321.0", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := scaler.CompareRunnerVersions(tc.a, tc.b)
			if got != tc.want || ok != tc.ok {
				t.Errorf("CompareRunnerVersions(%q, %q) = %d, %v; want %d, %v", tc.a, tc.b, got, ok, tc.want, tc.ok)
			}
		})
	}
}
