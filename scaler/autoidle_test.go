package scaler

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var t0 = time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)

func exact(d ...time.Duration) []OnlineSample {
	out := make([]OnlineSample, len(d))
	for i, x := range d {
		out[i] = OnlineSample{At: t0, D: x, Exact: true}
	}
	return out
}

// burst is n arrivals spread evenly over span, ending ago before t0.
func burst(n int, ago, span time.Duration) []time.Time {
	out := make([]time.Time, n)
	for i := range out {
		out[i] = t0.Add(-ago - span + time.Duration(i)*span/time.Duration(max(1, n-1)))
	}
	return out
}

func TestPoissonQuantile(t *testing.T) {
	cases := []struct {
		name string
		mean float64
		q    float64
		want int
	}{
		{"no arrivals expected", 0, 0.95, 0},
		{"a mean of 1 at p95: P(N≤2)=0.920, P(N≤3)=0.981", 1, 0.95, 3},
		{"a mean of 0.05 at p95: P(N=0)=0.951", 0.05, 0.95, 0},
		{"a mean of 10 at p99: P(N≤17)=0.986, P(N≤18)=0.993", 10, 0.99, 18},
		{"a mean too large for e^-mean falls back to mean + 4 sd", 1000, 0.95, 1127},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := poissonQuantile(tc.mean, tc.q); got != tc.want {
				t.Errorf("poissonQuantile(%v, %v) = %d, want %d", tc.mean, tc.q, got, tc.want)
			}
		})
	}
}

func TestSizeIdle(t *testing.T) {
	target := IdleTarget{Min: 1, Max: 15, Quantile: 0.95, Wait: 5 * time.Second}
	cases := []struct {
		name   string
		target IdleTarget
		obs    IdleObservation
		want   IdleSize
	}{
		{
			name:   "a pool no job came to keeps idle_min",
			target: target,
			obs:    IdleObservation{Now: t0, Online: exact(15 * time.Second)},
			want:   IdleSize{N: 1, Replenish: 15 * time.Second, Replay: 1, Level: -1},
		},
		{
			name:   "runners online within the target need no buffer beyond idle_min",
			target: target,
			obs:    IdleObservation{Now: t0, Arrivals: burst(20, time.Minute, time.Second), Online: exact(3*time.Second, 4*time.Second, 5*time.Second)},
			want:   IdleSize{N: 1, Replenish: 4 * time.Second, Rate: 20.0 / 600, Replay: 1, Level: -1},
		},
		{
			name:   "a burst of 10 at once needs 10 idle (none of 10 may wait at p95)",
			target: IdleTarget{Min: 0, Max: 15, Quantile: 0.95, Wait: 5 * time.Second},
			obs:    IdleObservation{Now: t0, Arrivals: burst(10, time.Minute, 0), Online: exact(15 * time.Second)},
			want:   IdleSize{N: 10, Replenish: 15 * time.Second, Rate: 10.0 / 600, Replay: 10, Poisson: 2, Level: -1},
		},
		{
			name:   "of a burst of 20 at once, one may wait at p95",
			target: IdleTarget{Min: 0, Max: 30, Quantile: 0.95, Wait: 5 * time.Second},
			obs:    IdleObservation{Now: t0, Arrivals: burst(20, time.Minute, 0), Online: exact(15 * time.Second)},
			want:   IdleSize{N: 19, Replenish: 15 * time.Second, Rate: 20.0 / 600, Replay: 19, Poisson: 2, Level: -1},
		},
		{
			name:   "20 jobs over 60s, each replaced in 15s: the 10s before any job hold 4, so 4 idle",
			target: IdleTarget{Min: 0, Max: 30, Quantile: 0.95, Wait: 5 * time.Second},
			obs:    IdleObservation{Now: t0, Arrivals: burst(20, time.Minute, 57*time.Second), Online: exact(15 * time.Second)},
			want:   IdleSize{N: 4, Replenish: 15 * time.Second, Rate: 20.0 / 600, Replay: 4, Poisson: 2, Level: -1},
		},
		{
			name:   "the buffer never exceeds idle_max; 30 jobs or more are replayed alone",
			target: target,
			obs:    IdleObservation{Now: t0, Arrivals: burst(40, time.Minute, 0), Online: exact(15 * time.Second)},
			want:   IdleSize{N: 15, Replenish: 15 * time.Second, Rate: 40.0 / 600, Replay: 15, Level: -1},
		},
		{
			name:   "a burst older than the lookback is forgotten",
			target: IdleTarget{Min: 0, Max: 30, Quantile: 0.95, Wait: 5 * time.Second},
			obs:    IdleObservation{Now: t0, Arrivals: burst(20, IdleLookback+time.Second, 0), Online: exact(15 * time.Second)},
			want:   IdleSize{N: 0, Replenish: 15 * time.Second, Level: -1},
		},
		{
			name:   "two jobs 15 minutes apart: one warm runner",
			target: IdleTarget{Min: 0, Max: 30, Quantile: 0.95, Wait: 5 * time.Second},
			obs:    IdleObservation{Now: t0, Arrivals: []time.Time{t0.Add(-5 * time.Minute), t0.Add(-20 * time.Minute)}, Online: exact(15 * time.Second)},
			want:   IdleSize{N: 1, Replenish: 15 * time.Second, Rate: 1.0 / 600, Replay: 1, Poisson: 1, Level: -1},
		},
		{
			name:   "without a measurement R is DefaultReplenish",
			target: IdleTarget{Min: 0, Max: 30, Quantile: 0.95, Wait: 5 * time.Second},
			obs:    IdleObservation{Now: t0, Arrivals: burst(5, time.Minute, 0)},
			want:   IdleSize{N: 5, Replenish: DefaultReplenish, Rate: 5.0 / 600, Replay: 5, Poisson: 2, Level: -1},
		},
		{
			name:   "arrivals after now are ignored",
			target: IdleTarget{Min: 0, Max: 30, Quantile: 0.95, Wait: 5 * time.Second},
			obs:    IdleObservation{Now: t0, Arrivals: burst(5, -time.Minute, 0), Online: exact(15 * time.Second)},
			want:   IdleSize{N: 0, Replenish: 15 * time.Second, Level: -1},
		},
		{
			name:   "a push with the day's level known gets the level, above what the lookback alone needs",
			target: IdleTarget{Min: 0, Max: 30, Quantile: 0.95, Wait: 5 * time.Second},
			obs:    IdleObservation{Now: t0, Arrivals: burst(10, time.Minute, 0), Online: exact(15 * time.Second), Level: Level{N: 12, Known: true, At: t0}},
			want:   IdleSize{N: 12, Replenish: 15 * time.Second, Rate: 10.0 / 600, Replay: 10, Poisson: 2, Level: 12, Batched: true},
		},
		{
			name:   "a push with the day's level known gets the level, below what the lookback alone needs",
			target: IdleTarget{Min: 0, Max: 30, Quantile: 0.95, Wait: 5 * time.Second},
			obs:    IdleObservation{Now: t0, Arrivals: burst(20, time.Minute, 0), Online: exact(15 * time.Second), Level: Level{N: 8, Known: true, At: t0}},
			want:   IdleSize{N: 8, Replenish: 15 * time.Second, Rate: 20.0 / 600, Replay: 19, Poisson: 2, Level: 8, Batched: true},
		},
		{
			name:   "without a push, what the lookback needs, when the day's level is more",
			target: IdleTarget{Min: 0, Max: 30, Quantile: 0.95, Wait: 5 * time.Second},
			obs:    IdleObservation{Now: t0, Arrivals: []time.Time{t0.Add(-5 * time.Minute), t0.Add(-20 * time.Minute)}, Online: exact(15 * time.Second), Level: Level{N: 12, Known: true, At: t0}},
			want:   IdleSize{N: 1, Replenish: 15 * time.Second, Rate: 1.0 / 600, Replay: 1, Poisson: 1, Level: 12},
		},
		{
			name:   "without a push, never more than the day's level",
			target: IdleTarget{Min: 0, Max: 30, Quantile: 0.95, Wait: 5 * time.Second},
			obs:    IdleObservation{Now: t0, Arrivals: burst(60, 0, IdleLookback-time.Second), Online: exact(65 * time.Second), Level: Level{N: 1, Known: true, At: t0}},
			want:   IdleSize{N: 1, Replenish: 65 * time.Second, Rate: 20.0 / 600, Replay: 2, Level: 1},
		},
		{
			name:   "the day's level is clamped to idle_min",
			target: IdleTarget{Min: 3, Max: 30, Quantile: 0.95, Wait: 5 * time.Second},
			obs:    IdleObservation{Now: t0, Arrivals: burst(10, time.Minute, 0), Online: exact(15 * time.Second), Level: Level{N: 1, Known: true, At: t0}},
			want:   IdleSize{N: 3, Replenish: 15 * time.Second, Rate: 10.0 / 600, Replay: 10, Poisson: 2, Level: 1, Batched: true},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if d := cmp.Diff(SizeIdle(tc.target, tc.obs), tc.want); d != "" {
				t.Errorf("SizeIdle (-got +want):\n%s", d)
			}
		})
	}
}

// The replay is the (S-1, S) inventory: with b idle and each job's runner
// online r after it, a job waits exactly when b others arrived in the r
// before it, and then until the first of those jobs' runners is online.
func TestReplayLate(t *testing.T) {
	arr := []time.Time{t0, t0.Add(time.Second), t0.Add(2 * time.Second), t0.Add(30 * time.Second)}
	cases := []struct {
		b    int
		wait time.Duration
		want int
	}{
		{0, 0, 4},                // every job waits 10s
		{0, 10 * time.Second, 0}, // none longer than 10s
		{1, 5 * time.Second, 2},  // jobs 2 and 3 wait 9s; job 4 finds the first runner idle
		{2, 5 * time.Second, 1},  // job 3 waits 8s
		{3, 0, 0},
	}
	for _, tc := range cases {
		if got := replayLate(arr, 10*time.Second, tc.b, tc.wait); got != tc.want {
			t.Errorf("replayLate(b=%d, wait=%s) = %d, want %d", tc.b, tc.wait, got, tc.want)
		}
	}
}

func TestListedOnlineIsTheMiddleOfTheSpanSinceThePreviousList(t *testing.T) {
	queued := t0
	cases := []struct {
		name          string
		started, seen time.Time
		want          time.Duration
	}{
		{"started before the previous list: online between the lists", t0.Add(2 * time.Second), t0.Add(60 * time.Second), 45 * time.Second},
		{"started after the previous list: online between the start and this list", t0.Add(40 * time.Second), t0.Add(60 * time.Second), 50 * time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := ListedOnline(queued, tc.started, tc.seen, 30*time.Second)
			if got.D != tc.want || got.Exact || !got.At.Equal(tc.seen) {
				t.Errorf("ListedOnline = %+v, want D %s, not exact, at %s", got, tc.want, tc.seen)
			}
		})
	}
}

func TestOnlineSamplesKeepTheLatestOfEachKind(t *testing.T) {
	var o OnlineSamples
	for i := range maxOnlineSamples + 10 {
		o.Add(OnlineSample{D: time.Duration(i), Exact: true})
		o.Add(OnlineSample{D: time.Duration(1000 + i)})
	}
	all := o.All()
	if len(all) != 2*maxOnlineSamples {
		t.Fatalf("%d samples kept, want %d", len(all), 2*maxOnlineSamples)
	}
	if all[0].D != 10 || !all[0].Exact || all[maxOnlineSamples].D != 1010 || all[len(all)-1].D != time.Duration(1000+maxOnlineSamples+9) {
		t.Errorf("kept %v … %v, want the latest %d of each kind, exact first", all[0], all[len(all)-1], maxOnlineSamples)
	}
}

// sampleCase is a runner record and the online sample it should give.
type sampleCase struct {
	name    string
	rec     runnerRec
	want    OnlineSample
	wantVia string
}

// wantSample checks the sample r gives, with lists 30 s apart.
func wantSample(t *testing.T, r runnerRec, want OnlineSample, wantVia string) {
	t.Helper()
	got, via, ok := onlineSample(r, 30*time.Second)
	if !ok || via != wantVia {
		t.Fatalf("onlineSample: ok %v via %q, want via %q", ok, via, wantVia)
	}
	if d := cmp.Diff(got, want); d != "" {
		t.Errorf("sample (-got +want):\n%s", d)
	}
}

func TestOnlineSampleFromARecord(t *testing.T) {
	base := runnerRec{Name: "eph-small-abcdefgh", Pool: "small", QueuedAt: t0, CreatedAt: t0.Add(time.Second), StartedAt: t0.Add(3 * time.Second)}
	waiting := base
	if !waiting.tookJob(7, t0.Add(-time.Second), t0.Add(12*time.Second)) {
		t.Fatal("tookJob did not apply")
	}
	later := base
	later.tookJob(8, t0.Add(10*time.Second), t0.Add(12*time.Second))
	listed := base
	listed.idle(t0.Add(40 * time.Second))
	cases := []sampleCase{
		{"a job waiting since before the instance started took it: exact", waiting, OnlineSample{At: t0.Add(12 * time.Second), D: 12 * time.Second, Exact: true}, onlineWaitingJob},
		{"a job queued after the instance started took it: an upper bound", later, OnlineSample{At: t0.Add(12 * time.Second), D: 12 * time.Second}, onlineLaterJob},
		{"first seen idle in the runner list: the middle since the previous list", listed, OnlineSample{At: t0.Add(40 * time.Second), D: 25 * time.Second}, onlineListing},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			wantSample(t, tc.rec, tc.want, tc.wantVia)
		})
	}
	if _, _, ok := onlineSample(base, 30*time.Second); ok {
		t.Error("a runner never seen online gave a sample")
	}
	again := waiting
	if again.tookJob(9, t0, t0.Add(time.Minute)) {
		t.Error("a second in_progress moved a busy runner's record")
	}
}

// A pass can see a runner busy in GitHub's list before its job's
// in_progress event is handled, and a completed event can be handled
// before it: the event still settles the runner's job and its exact
// online time, once.
func TestTheInProgressEventSettlesARunnerMarkedBeforeIt(t *testing.T) {
	base := runnerRec{Name: "eph-small-abcdefgh", Pool: "small", State: runnerStarted, QueuedAt: t0, CreatedAt: t0.Add(time.Second), StartedAt: t0.Add(3 * time.Second)}
	listed := base
	if !listed.busy(0, t0.Add(20*time.Second)) || listed.OnlineBy != onlineListedBusy {
		t.Fatalf("marked busy from the list: %+v, want online_by %q", listed, onlineListedBusy)
	}
	completedFirst := base
	completedFirst.done(t0.Add(30 * time.Second))
	seenIdle := base
	seenIdle.idle(t0.Add(10 * time.Second))
	seenIdle.busy(0, t0.Add(20*time.Second))

	cases := []sampleCase{
		{"seen busy in the list first", listed, OnlineSample{At: t0.Add(12 * time.Second), D: 12 * time.Second, Exact: true}, onlineWaitingJob},
		{"its completed event handled first", completedFirst, OnlineSample{At: t0.Add(12 * time.Second), D: 12 * time.Second, Exact: true}, onlineWaitingJob},
		{"seen idle in the list first: the list's time stands", seenIdle, OnlineSample{At: t0.Add(10 * time.Second), D: 6500 * time.Millisecond}, onlineListing},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.rec
			if !r.tookJob(7, t0.Add(-time.Second), t0.Add(12*time.Second)) {
				t.Fatal("the in_progress event did not apply")
			}
			if r.BusyJob != 7 {
				t.Errorf("busy job %d, want 7", r.BusyJob)
			}
			wantSample(t, r, tc.want, tc.wantVia)
			if again := r; again.tookJob(7, t0.Add(-time.Second), t0.Add(12*time.Second)) {
				t.Error("the same event handled again moved the record")
			}
		})
	}
}

func TestDayLevel(t *testing.T) {
	target := IdleTarget{Min: 0, Max: 30, Quantile: 0.95, Wait: 5 * time.Second}
	online := exact(15 * time.Second)
	// A push of 20 at once three hours ago and 20 single jobs an hour
	// apart: 40 jobs, 2 of which may wait at p95, so 18 of the push's
	// jobs need an idle runner.
	day := slices.Concat(burst(20, 3*time.Hour, 0), burst(20, 30*time.Minute, 19*time.Hour))
	cases := []struct {
		name string
		arr  []time.Time
		want Level
	}{
		{"fewer than 30 jobs in the day: no level", burst(29, time.Hour, time.Hour), Level{At: t0}},
		{"the day's push is replayed among all the day's jobs", day, Level{N: 18, Known: true, At: t0}},
		{"jobs older than the day are forgotten", slices.Concat(day, burst(40, IdleHistory+time.Minute, 0)), Level{N: 18, Known: true, At: t0}},
		{"jobs after now are ignored", slices.Concat(day, burst(40, -time.Minute, 0)), Level{N: 18, Known: true, At: t0}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := DayLevel(target, IdleObservation{Now: t0, Arrivals: tc.arr, Online: online, Level: Level{N: 99, Known: true}})
			if d := cmp.Diff(got, tc.want); d != "" {
				t.Errorf("DayLevel (-got +want):\n%s", d)
			}
		})
	}
}

// poissonArrivals draws the arrivals of the lookback before t0 at
// perMinute(minutes since the lookback began), by thinning.
func poissonArrivals(seed uint64, peak float64, perMinute func(m float64) float64) []time.Time {
	r := rand.New(rand.NewPCG(seed, 7))
	var out []time.Time
	for m := r.ExpFloat64() / peak; m < IdleLookback.Minutes(); m += r.ExpFloat64() / peak {
		if r.Float64()*peak < perMinute(m) {
			out = append(out, t0.Add(-IdleLookback+time.Duration(m*float64(time.Minute))))
		}
	}
	return out
}

func TestBatched(t *testing.T) {
	steady := func(perMinute float64) func(float64) float64 { return func(float64) float64 { return perMinute } }
	// Each case is drawn 200 times: a push is never missed, and a smooth
	// load is taken for one in at most 1% of the draws.
	cases := []struct {
		name     string
		draw     func(seed uint64) []time.Time
		want     bool
		maxWrong int
	}{
		{"a push of 20 jobs over 20 s among 3 jobs a minute", func(seed uint64) []time.Time {
			return slices.Concat(poissonArrivals(seed, 3, steady(3)), burst(20, 5*time.Minute, 20*time.Second))
		}, true, 0},
		{"a push of 10 jobs at once in a quiet pool", func(uint64) []time.Time { return burst(10, 10*time.Minute, 0) }, true, 0},
		{"two jobs a second apart in a quiet pool", func(uint64) []time.Time { return burst(2, 10*time.Minute, time.Second) }, false, 0},
		{"Poisson arrivals, 2 a minute", func(seed uint64) []time.Time { return poissonArrivals(seed, 2, steady(2)) }, false, 2},
		{"Poisson arrivals, 60 a minute", func(seed uint64) []time.Time { return poissonArrivals(seed, 60, steady(60)) }, false, 2},
		{"Poisson arrivals rising from 20 to 40 a minute", func(seed uint64) []time.Time {
			return poissonArrivals(seed, 40, func(m float64) float64 { return 20 + 20*m/IdleLookback.Minutes() })
		}, false, 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			wrong := 0
			for seed := range uint64(200) {
				arr := tc.draw(seed)
				slices.SortFunc(arr, time.Time.Compare)
				if batched(arr, t0) != tc.want {
					wrong++
				}
			}
			if wrong > tc.maxWrong {
				t.Errorf("batched was not %v for %d of 200 draws, want at most %d", tc.want, wrong, tc.maxWrong)
			}
		})
	}
}
