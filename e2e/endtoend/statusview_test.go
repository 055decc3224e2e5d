package endtoend

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/rs/zerolog"

	"github.com/ephemera-ci/ephemera/e2e/e2etest"
	"github.com/ephemera-ci/ephemera/internal/demo"
	"github.com/ephemera-ci/ephemera/internal/tooltest"
	"github.com/ephemera-ci/ephemera/internal/waitfor"
)

// logEntry is one line of the page's activity log: a state the page
// showed a job or a runner in, in the order it showed them.
type logEntry struct {
	Kind  string `json:"kind"`
	ID    string `json:"id"`
	State string `json:"state"`
	Job   string `json:"job"`
}

// readLog is evaluated in the page: the activity log, oldest first.
const readLog = `[...document.querySelectorAll("#log li")].reverse().map(li => ({kind: li.dataset.kind, id: li.dataset.id, state: li.dataset.state, job: li.dataset.job}))`

// browser starts Debian's chromium headless with a fresh profile and no
// network of its own beyond the page's.
func browser(t *testing.T) context.Context {
	t.Helper()
	exe := tooltest.Path(t, "chromium", "chromium")
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(exe),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 860),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(t.Context(), opts...)
	t.Cleanup(cancelAlloc)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(cancel)
	return ctx
}

// TestStatusViewInABrowserDuringARunOnLXD opens the status view in
// chromium while the demo's system runs jobs on real LXD containers, and
// asserts on the DOM as it updates live: a job shows up waiting, its
// runner goes provisioning → idle or busy, and the job finishes; a marker
// set at page load is still there at the end, so the page never reloaded.
// EPHEMERA_UPDATE_SCREENSHOT=1 writes the screenshot to docs/status-view.png.
func TestStatusViewInABrowserDuringARunOnLXD(t *testing.T) {
	if testing.Short() {
		t.Skip("a browser and LXD")
	}
	e2etest.RequireStandinImage(t)
	e2etest.TakeTurn(t)
	ctx := browser(t)
	prefix := "w" + demo.RandomHex(2)
	sys, err := demo.Start(t.Context(), demo.Spec{
		// max 1: the second and third jobs wait for the first one's slot.
		Pools: []string{prefix + "-a"}, MinIdle: 0, Max: 1, Image: e2etest.StandinImage,
		Interval: time.Second, BootstrapTimeout: time.Minute, IdleGrace: 5 * time.Second,
		Log: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sys.Close()
	url := sys.StatusURL()
	t.Logf("status view at %s", url)

	if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
		t.Fatal(err)
	}
	updates := func() int {
		n, err := chromedp.Run(ctx, chromedp.Evaluate[int](`Number(document.body.dataset.updates || 0)`))
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	waitfor.True(t, 10*time.Second, "the page's first state from the event stream", func() bool { return updates() > 0 })
	marker := "marker-" + demo.RandomHex(4)
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[string](`window.ephemeraMarker = "`+marker+`"`)); err != nil {
		t.Fatal(err)
	}

	// The run: three jobs through the real webhook, scaler, LXD and policy.
	var wg sync.WaitGroup
	var res demo.Result
	var runErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		res, runErr = sys.Run(t.Context(), demo.Plan{Jobs: 3, Rate: 3, Duration: 2 * time.Second, Timeout: 4 * time.Minute}, 200*time.Millisecond, func(demo.Snapshot) {})
	}()

	// What the page showed, as the run goes.
	var entries []logEntry
	var shot []byte
	var job, runner string
	seen := func() bool {
		var err error
		entries, err = chromedp.Run(ctx, chromedp.Evaluate[[]logEntry](readLog))
		if err != nil {
			t.Fatal(err)
		}
		if shot == nil && busyWhileWaiting(entries) {
			if shot, err = chromedp.Run(ctx, chromedp.FullScreenshot(100)); err != nil {
				t.Fatal(err)
			}
		}
		job, runner = lifecycle(entries)
		return job != "" && shot != nil
	}
	waitfor.True(t, 4*time.Minute, "the page to show a job waiting, its runner provisioning then idle or busy, and the job done", seen)
	t.Logf("job %s: waiting → done; its runner %s: provisioning → idle/busy; %d log entries, %d updates", job, runner, len(entries), updates())

	wg.Wait()
	if runErr != nil {
		t.Fatal(runErr)
	}
	t.Logf("%d jobs completed, queued→running p50 %s", res.Completed, res.LatencyP50)
	got, err := chromedp.Run(ctx, chromedp.Evaluate[string](`window.ephemeraMarker || ""`))
	if err != nil {
		t.Fatal(err)
	}
	navs, err := chromedp.Run(ctx, chromedp.Evaluate[int](`performance.getEntriesByType("navigation").length`))
	if err != nil {
		t.Fatal(err)
	}
	if got != marker || navs != 1 {
		t.Errorf("marker %q (want %q), %d navigations: the page was reloaded", got, marker, navs)
	}
	dir := t.TempDir()
	if os.Getenv("EPHEMERA_UPDATE_SCREENSHOT") == "1" {
		root, err := e2etest.RepoRoot()
		if err != nil {
			t.Fatal(err)
		}
		dir = filepath.Join(root, "docs")
	}
	if err := os.WriteFile(filepath.Join(dir, "status-view.png"), shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %d bytes in %s", len(shot), dir)
}

// lifecycle finds, in the order the page showed them, a job shown waiting
// then done, whose own runner was shown provisioning and then idle or
// busy. It returns the job id and runner name, or "".
func lifecycle(entries []logEntry) (job, runner string) {
	type progress struct{ waiting, done bool }
	jobs := map[string]*progress{}
	provisioning := map[string]string{} // runner → job it was made for
	up := map[string]bool{}             // runner shown idle or busy after provisioning
	for _, e := range entries {
		switch e.Kind {
		case "job":
			p := jobs[e.ID]
			if p == nil {
				p = &progress{}
				jobs[e.ID] = p
			}
			switch e.State {
			case "waiting":
				p.waiting = true
			case "done":
				p.done = p.waiting
			}
		case "runner":
			switch e.State {
			case "provisioning":
				provisioning[e.ID] = e.Job
			case "idle", "busy":
				if _, ok := provisioning[e.ID]; ok {
					up[e.ID] = true
				}
			}
		}
	}
	for r, j := range provisioning {
		if p := jobs[j]; p != nil && p.waiting && p.done && up[r] {
			return j, r
		}
	}
	return "", ""
}

// busyWhileWaiting reports whether the page last showed a busy runner
// while a job waited: the moment worth a screenshot.
func busyWhileWaiting(entries []logEntry) bool {
	state := map[string]string{}
	for _, e := range entries {
		state[e.Kind+" "+e.ID] = e.State
	}
	busy, waiting := false, false
	for k, s := range state {
		busy = busy || (s == "busy" && k[:6] == "runner")
		waiting = waiting || (s == "waiting" && k[:3] == "job")
	}
	return busy && waiting
}
