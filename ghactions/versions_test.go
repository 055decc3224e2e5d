package ghactions_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/ephemera-ci/ephemera/ghactions"
	"github.com/ephemera-ci/ephemera/internal/config"
	"github.com/ephemera-ci/ephemera/internal/ghclient"
	"github.com/ephemera-ci/ephemera/internal/githubfake"
)

func TestLatestRunnerVersionAsksWhereRunnersAreRegistered(t *testing.T) {
	for _, tc := range []struct {
		name, org, repo, path string
	}{
		{"an organization's runners read the organization's downloads", "acme", "", "/orgs/acme/actions/runners/downloads"},
		{"a repository's runners read the repository's downloads", "", "acme/app", "/repos/acme/app/actions/runners/downloads"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake := startFake(t)
			clients, err := ghclient.New(ghclient.Config{APIURL: fake.URL, Token: config.NewSecret("ghp_test"), Timeout: time.Second, Registerer: prometheus.NewRegistry(), Log: zerolog.Nop()})
			if err != nil {
				t.Fatal(err)
			}
			gh, err := ghactions.New(ghactions.Config{Clients: clients, Org: tc.org, Repo: tc.repo})
			if err != nil {
				t.Fatal(err)
			}
			v, err := gh.LatestRunnerVersion(t.Context(), 0)
			if err != nil || v != githubfake.DefaultRunnerVersion {
				t.Fatalf("LatestRunnerVersion = %q, %v; want %s", v, err, githubfake.DefaultRunnerVersion)
			}
			// A release GitHub publishes shows at the next call; versions
			// compare as numbers, not as text.
			fake.SetRunnerVersion("2.1000.1")
			if v, err := gh.LatestRunnerVersion(t.Context(), 0); err != nil || v != "2.1000.1" {
				t.Fatalf("after a release: LatestRunnerVersion = %q, %v; want 2.1000.1", v, err)
			}
			if n := fake.CountCalls(http.MethodGet, tc.path); n != 2 {
				t.Errorf("GET %s called %d times, want 2", tc.path, n)
			}
		})
	}
}
