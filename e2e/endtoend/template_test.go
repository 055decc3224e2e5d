package endtoend

import (
	"bufio"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/ephemera-ci/ephemera/e2e/e2etest"
	"github.com/ephemera-ci/ephemera/internal/demo"
	"github.com/ephemera-ci/ephemera/internal/waitfor"
)

// TestJobsRunOnCopiesOfThePoolsTemplate runs jobs on a pool with
// template: true: `ephemera serve` builds the template from the stand-in
// image (whose init, finding no user-data, stops the template by itself),
// and every runner is a copy of it that boots, reads its own user-data and
// runs its job.
func TestJobsRunOnCopiesOfThePoolsTemplate(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end on LXD")
	}
	e2etest.RequireStandinImage(t)
	e2etest.TakeTurn(t)
	sys, err := demo.Start(t.Context(), demo.Spec{
		Pools: []string{"e" + demo.RandomHex(2)}, MinIdle: 0, Max: 4, Image: e2etest.StandinImage, Template: true,
		Interval: time.Second, BootstrapTimeout: time.Minute, IdleGrace: 5 * time.Second,
		Log: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sys.Close()
	waitfor.True(t, 3*time.Minute, "the pool's template", sys.TemplatesReady)

	plan := demo.Plan{Jobs: 4, Rate: 2, Duration: 500 * time.Millisecond, Timeout: 3 * time.Minute}
	// Run restarts ephemera to drain at the end, which resets its metrics:
	// they are read while the jobs run.
	creates := map[string]float64{}
	res, err := sys.Run(t.Context(), plan, 200*time.Millisecond, func(demo.Snapshot) {
		for source, n := range scrapeCreates(t, sys.StatusURL()+"metrics") {
			creates[source] = max(creates[source], n)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Completed != plan.Jobs || len(res.Unexpected) != 0 {
		t.Errorf("%d of %d jobs completed; unexpected: %v", res.Completed, plan.Jobs, res.Unexpected)
	}
	if creates["template"] < float64(plan.Jobs) || creates["image"] != 0 {
		t.Errorf("instances created by source %v, want all %d from the template", creates, plan.Jobs)
	}
}

// scrapeCreates sums ephemera_lxd_creates_total by source. It may run on
// another goroutine than the test's: it never calls t.Fatal.
func scrapeCreates(t *testing.T, url string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return nil // between the run and the drain's restart
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "ephemera_lxd_creates_total{") {
			continue
		}
		_, rest, _ := strings.Cut(line, `source="`)
		source, _, _ := strings.Cut(rest, `"`)
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			t.Errorf("metrics line %q: %v", line, err)
			continue
		}
		out[source] += v
	}
	if err := sc.Err(); err != nil {
		t.Errorf("read metrics: %v", err)
	}
	return out
}
