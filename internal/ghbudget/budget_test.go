package ghbudget

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ephemera-ci/ephemera/internal/bus/bustest"
	"github.com/ephemera-ci/ephemera/internal/waitfor"
)

// clock is a settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func bucket(t *testing.T) jetstream.KeyValue {
	t.Helper()
	b, _ := bustest.Open(t)
	kv, err := b.KeyValue(t.Context(), BucketConfig())
	if err != nil {
		t.Fatal(err)
	}
	return kv
}

// budgets opens n processes' budgets on one bucket, on one clock, with
// windows long enough that nothing slides unless the clock is moved.
func budgets(t *testing.T, n int, tweak func(*Config)) ([]*Budget, *clock) {
	t.Helper()
	kv := bucket(t)
	clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	var out []*Budget
	for i := range n {
		cfg := Config{KV: kv, Replica: fmt.Sprintf("r%d", i), Minute: time.Hour, PointsPerMinute: 25, MaxWait: time.Millisecond, Now: clk.Now}
		if tweak != nil {
			tweak(&cfg)
		}
		b, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out, clk
}

func reg(p Priority) Request {
	return Request{Installation: "1", Endpoint: "POST generate_jitconfig", Method: http.MethodPost, Priority: p}
}

func limitedOn(t *testing.T, err error, on string) {
	t.Helper()
	le, ok := errors.AsType[*LimitedError](err)
	if !ok || le.On != on {
		t.Fatalf("got %v, want a *LimitedError on %s", err, on)
	}
}

func TestProcessesShareOneMinuteOfPointsPerEndpoint(t *testing.T) {
	bs, _ := budgets(t, 3, nil)
	admitted := 0
	for i := range 9 {
		tk, err := bs[i%3].Acquire(t.Context(), reg(Registration))
		if err != nil {
			limitedOn(t, err, onEndpoint)
			continue
		}
		admitted++
		if err := tk.Done(t.Context(), nil); err != nil {
			t.Fatal(err)
		}
	}
	if admitted != 5 {
		t.Errorf("%d registrations of 5 points admitted across three processes under 25 points, want 5", admitted)
	}
	// Another endpoint has its own minute.
	if _, err := bs[0].Acquire(t.Context(), Request{Installation: "1", Endpoint: "DELETE remove_runner", Method: http.MethodDelete, Priority: Registration}); err != nil {
		t.Errorf("another endpoint: %v", err)
	}
}

func TestTheMinuteSlidesBySlices(t *testing.T) {
	bs, clk := budgets(t, 1, func(c *Config) { c.PointsPerMinute = 5 })
	if _, err := bs[0].Acquire(t.Context(), reg(Registration)); err != nil {
		t.Fatal(err)
	}
	clk.Add(time.Hour) // the minute (an hour here) has passed, not the slice after it
	if _, err := bs[0].Acquire(t.Context(), reg(Registration)); err == nil {
		t.Fatal("admitted a minute after the last, when a sliding minute could still count it")
	}
	clk.Add(time.Hour / 60)
	if _, err := bs[0].Acquire(t.Context(), reg(Registration)); err != nil {
		t.Errorf("a minute and a slice later: %v", err)
	}
}

// GitHub counts a request when it arrives, which may be in a later slice
// than its admission: its points count from when it finished, so that
// the budget forgets them no sooner than GitHub's sliding minute does
// (before, a request that crossed a slice boundary on its way could let
// one request too many through a minute later: a rate-limit answer).
func TestARequestCountsFromWhenItFinished(t *testing.T) {
	bs, clk := budgets(t, 1, func(c *Config) { c.PointsPerMinute = 5 })
	tk, err := bs[0].Acquire(t.Context(), reg(Registration))
	if err != nil {
		t.Fatal(err)
	}
	clk.Add(time.Hour/60 + time.Second) // answered in the next slice
	if err := tk.Done(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	clk.Add(time.Hour) // the admission's slice has left the minute, the answer's has not
	if _, err := bs[0].Acquire(t.Context(), reg(Registration)); err == nil {
		t.Fatal("admitted while the minute since the last request's answer still counts it")
	}
	clk.Add(time.Hour / 60)
	if _, err := bs[0].Acquire(t.Context(), reg(Registration)); err != nil {
		t.Errorf("a minute and a slice after the answer: %v", err)
	}
}

// The same when the answer rides on another request's write (pending).
func TestARequestCountsFromWhenItFinishedWhenItsAnswerRidesOnAnotherWrite(t *testing.T) {
	bs, clk := budgets(t, 1, func(c *Config) { c.PointsPerMinute = 5 })
	b := bs[0]
	tk, err := b.Acquire(t.Context(), reg(Registration))
	if err != nil {
		t.Fatal(err)
	}
	clk.Add(time.Hour/60 + time.Second)
	b.turn.Lock() // another request of this process is talking to KV
	err = tk.Done(t.Context(), nil)
	b.turn.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	clk.Add(time.Hour)
	if _, err := b.Acquire(t.Context(), reg(Registration)); err == nil {
		t.Fatal("admitted while the minute since the last request's answer still counts it")
	}
}

// What a finished request left pending reaches the shared record within
// Run's tick even when its process sends nothing more: another process
// sees its place given back and its points moved.
func TestWhatIsPendingIsWrittenWhenItsProcessGoesQuiet(t *testing.T) {
	bs, clk := budgets(t, 2, func(c *Config) { c.PointsPerMinute = 5 })
	tk, err := bs[0].Acquire(t.Context(), reg(Registration))
	if err != nil {
		t.Fatal(err)
	}
	clk.Add(time.Hour/60 + time.Second)
	bs[0].turn.Lock()
	err = tk.Done(t.Context(), nil)
	bs[0].turn.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	bs[0].flush(t.Context())
	snaps, err := Snapshots(t.Context(), bs[1].cfg.KV, bs[1].cfg)
	if err != nil || len(snaps) != 1 || snaps[0].InFlight != 0 {
		t.Fatalf("snapshots %+v, %v: want the place given back", snaps, err)
	}
	clk.Add(time.Hour)
	if _, err := bs[1].Acquire(t.Context(), reg(Registration)); err == nil {
		t.Fatal("another process admitted a request while the minute since the quiet process's answer still counts it")
	}
}

func TestLowerPrioritiesLeaveTheirShareToRegistrations(t *testing.T) {
	bs, _ := budgets(t, 2, func(c *Config) { c.PointsPerMinute = 100 })
	n := func(b *Budget, p Priority) int {
		k := 0
		for {
			if _, err := b.Acquire(t.Context(), reg(p)); err != nil {
				limitedOn(t, err, onEndpoint)
				return k
			}
			k++
		}
	}
	if got := n(bs[0], Cleanup); got != 10 {
		t.Errorf("cleanup took %d requests of 5 points, want half of 100 points: 10", got)
	}
	if got := n(bs[1], TopUp); got != 5 {
		t.Errorf("top-ups took %d more, want up to three quarters: 5", got)
	}
	if got := n(bs[0], Registration); got != 5 {
		t.Errorf("registrations took %d more, want the rest: 5", got)
	}
}

func TestThePrimaryBudgetIsReadFromAnswersAndKeptForRegistrations(t *testing.T) {
	bs, clk := budgets(t, 2, func(c *Config) { c.PointsPerMinute = 10000 })
	tk, err := bs[0].Acquire(t.Context(), reg(Registration))
	if err != nil {
		t.Fatal(err)
	}
	reset := clk.Now().Add(30 * time.Minute)
	if err := tk.Done(t.Context(), answer(http.StatusCreated, 100, 12, reset, "")); err != nil {
		t.Fatal(err)
	}
	// 12 left of 100: cleanup keeps 20 back, listing 15, top-ups 10.
	_, err = bs[1].Acquire(t.Context(), Request{Installation: "1", Endpoint: "GET list_runners", Method: "GET", Priority: Cleanup})
	limitedOn(t, err, onPrimary)
	for i := range 12 {
		if _, err := bs[1].Acquire(t.Context(), reg(Registration)); err != nil {
			t.Fatalf("registration %d of the 12 left: %v", i, err)
		}
	}
	_, err = bs[0].Acquire(t.Context(), reg(Registration))
	limitedOn(t, err, onPrimary)
	clk.Add(31 * time.Minute) // a new hour
	if _, err := bs[0].Acquire(t.Context(), reg(Cleanup)); err != nil {
		t.Errorf("after the reset: %v", err)
	}
}

func TestAWaitGitHubAsksForStopsOnlyItsEndpoint(t *testing.T) {
	bs, clk := budgets(t, 2, func(c *Config) { c.PointsPerMinute = 10000 })
	list := Request{Installation: "1", Endpoint: "GET list_runners", Method: "GET", Priority: Listing}
	tk, err := bs[0].Acquire(t.Context(), list)
	if err != nil {
		t.Fatal(err)
	}
	err = tk.Done(t.Context(), answer(http.StatusForbidden, 5000, 4000, clk.Now().Add(time.Hour), "60"))
	limitedOn(t, err, onEndpoint)
	_, err = bs[1].Acquire(t.Context(), list)
	limitedOn(t, err, onEndpoint)
	if _, err := bs[1].Acquire(t.Context(), reg(Registration)); err != nil {
		t.Errorf("a registration after a listing was limited: %v", err)
	}
}

func TestPlacesInFlightAreSharedAndADeadProcesssComeBack(t *testing.T) {
	bs, clk := budgets(t, 2, func(c *Config) { c.MaxConcurrent = 2; c.PointsPerMinute = 10000 })
	a1, err := bs[0].Acquire(t.Context(), reg(Registration))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bs[0].Acquire(t.Context(), reg(Registration)); err != nil {
		t.Fatal(err)
	}
	_, err = bs[1].Acquire(t.Context(), reg(Registration))
	limitedOn(t, err, onInFlight)
	if err := a1.Done(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := bs[1].Acquire(t.Context(), reg(Registration)); err != nil {
		t.Fatalf("a place given back: %v", err)
	}
	// r0 dies holding one place, r1 holds the other: after r0's lease
	// only r1's counts.
	clk.Add(59 * time.Second)
	if _, err := bs[1].Acquire(t.Context(), reg(Registration)); err == nil {
		t.Fatal("admitted a third request in flight")
	}
	clk.Add(2 * time.Second)
	if _, err := bs[1].Acquire(t.Context(), reg(Registration)); err != nil {
		t.Errorf("after the dead process's lease ran out: %v", err)
	}
}

func TestAWaitingRegistrationGoesBeforeHousekeepingThatWaitedLonger(t *testing.T) {
	bs, clk := budgets(t, 1, func(c *Config) {
		c.PointsPerMinute = 5
		c.Shares = [numPriorities]float64{1, 1, 1, 1, 1}
		c.MaxWait = 24 * time.Hour
		c.Minute = 60 * time.Millisecond // the first in line asks again every millisecond
	})
	b := bs[0]
	if _, err := b.Acquire(t.Context(), reg(Registration)); err != nil {
		t.Fatal(err)
	}
	order := make(chan Priority, 2)
	var wg sync.WaitGroup
	start := func(p Priority) {
		wg.Go(func() {
			if _, err := b.Acquire(t.Context(), reg(p)); err != nil {
				t.Error(err)
			}
			order <- p
		})
		waitfor.True(t, 5*time.Second, p.String()+" waiting", func() bool { return b.Waiting()[p] == 1 })
	}
	start(Cleanup)
	start(Registration)
	next := func() { clk.Add(time.Second) }
	next()
	if p := <-order; p != Registration {
		t.Fatalf("first admitted: %s, want the registration", p)
	}
	waitfor.True(t, 5*time.Second, "cleanup waiting again", func() bool { return b.Waiting()[Cleanup] == 1 })
	next()
	wg.Wait()
}

func TestAWaitBeyondTheDeadlineFailsAtOnce(t *testing.T) {
	bs, clk := budgets(t, 1, func(c *Config) { c.PointsPerMinute = 5; c.MaxWait = 24 * time.Hour })
	if _, err := bs[0].Acquire(t.Context(), reg(Registration)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	_, err := bs[0].Acquire(ctx, reg(Registration))
	le, ok := errors.AsType[*LimitedError](err)
	if !ok || !le.Until.After(clk.Now()) {
		t.Fatalf("got %v, want a *LimitedError in the future", err)
	}
}

func TestSnapshotsShowWhatIsSpent(t *testing.T) {
	bs, clk := budgets(t, 1, nil)
	tk, err := bs[0].Acquire(t.Context(), reg(Registration))
	if err != nil {
		t.Fatal(err)
	}
	if err := tk.Done(t.Context(), answer(http.StatusCreated, 5000, 4321, clk.Now().Add(time.Hour), "")); err != nil {
		t.Fatal(err)
	}
	if _, err := bs[0].Acquire(t.Context(), reg(Registration)); err != nil {
		t.Fatal(err)
	}
	snaps, err := Snapshots(t.Context(), bs[0].cfg.KV, Config{Minute: time.Hour, PointsPerMinute: 25, Now: clk.Now})
	if err != nil || len(snaps) != 1 {
		t.Fatalf("snapshots %+v, %v", snaps, err)
	}
	s := snaps[0]
	if s.Points["POST generate_jitconfig"] != 10 || s.InFlight != 1 || s.PrimaryRemaining != 4320 || s.PrimaryLimit != 5000 {
		t.Errorf("snapshot %+v, want 10 points, 1 in flight, 4320 of 5000 left", s)
	}
}

func answer(status, limit, remaining int, reset time.Time, retryAfter string) *http.Response {
	h := http.Header{}
	h.Set("X-RateLimit-Limit", strconv.Itoa(limit))
	h.Set("X-RateLimit-Remaining", strconv.Itoa(remaining))
	h.Set("X-RateLimit-Reset", strconv.FormatInt(reset.Unix(), 10))
	if retryAfter != "" {
		h.Set("Retry-After", retryAfter)
	}
	return &http.Response{StatusCode: status, Header: h}
}

// An answer about a window that ends sooner (a short wait GitHub asked
// for) does not carry its exhaustion into the later window already known.
func TestAnExhaustedShortWindowDoesNotExhaustTheHour(t *testing.T) {
	bs, clk := budgets(t, 1, func(c *Config) { c.PointsPerMinute = 10000 })
	done := func(resp *http.Response) {
		t.Helper()
		tk, err := bs[0].Acquire(t.Context(), reg(Registration))
		if err != nil {
			t.Fatal(err)
		}
		_ = tk.Done(t.Context(), resp)
	}
	done(answer(http.StatusCreated, 5000, 4990, clk.Now().Add(time.Hour), ""))
	done(answer(http.StatusForbidden, 5000, 0, clk.Now().Add(2*time.Second), ""))
	_, err := bs[0].Acquire(t.Context(), reg(Registration))
	limitedOn(t, err, onPrimary)
	clk.Add(3 * time.Second)
	if _, err := bs[0].Acquire(t.Context(), reg(Registration)); err != nil {
		t.Errorf("after the short window: %v", err)
	}
}

// lostReply is a bucket whose first read of key never gets its answer,
// as when a NATS node restarts with the request in flight.
type lostReply struct {
	jetstream.KeyValue
	key  string
	once sync.Once
}

func (l *lostReply) Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error) {
	lost := false
	if key == l.key {
		l.once.Do(func() { lost = true })
	}
	if lost {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return l.KeyValue.Get(ctx, key)
}

// A read of the budget whose reply is lost is asked again after
// kvOpTimeout, within the caller's deadline, instead of holding the
// request (a policy check's GitHub call) until that deadline and failing
// it.
func TestAReadOfTheBudgetWhoseReplyIsLostIsAskedAgain(t *testing.T) {
	kv := &lostReply{KeyValue: bucket(t), key: "inst.1"}
	b, err := New(Config{KV: kv, Replica: "r0", Minute: time.Hour, PointsPerMinute: 25})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*kvOpTimeout)
	defer cancel()
	tk, err := b.Acquire(ctx, reg(Registration))
	if err != nil {
		t.Fatalf("Acquire = %v, want a place once the lost read is asked again", err)
	}
	tk.Done(t.Context(), answer(http.StatusOK, 5000, 4999, time.Now().Add(time.Hour), ""))
}

// lateWrites is a bucket whose next write, once armed, is applied but
// not answered in time: answered only after the caller gave up (its
// context ended first, as on a loaded machine), or, with lost, never
// (the write fails with a timeout of its own while the caller's context
// lives on, as when a NATS node restarts with the reply on its way).
type lateWrites struct {
	jetstream.KeyValue
	armed atomic.Bool
	lost  bool
}

func (l *lateWrites) Update(ctx context.Context, key string, value []byte, rev uint64) (uint64, error) {
	if !l.armed.CompareAndSwap(true, false) {
		return l.KeyValue.Update(ctx, key, value, rev)
	}
	if _, err := l.KeyValue.Update(context.WithoutCancel(ctx), key, value, rev); err != nil {
		return 0, err
	}
	if l.lost {
		return 0, nats.ErrTimeout
	}
	<-ctx.Done()
	return 0, ctx.Err()
}

// lateBudget is one process's budget on a lateWrites bucket, with its
// record written once already, so that the next request updates it.
func lateBudget(t *testing.T, kv *lateWrites, maxConcurrent int) *Budget {
	t.Helper()
	b, err := New(Config{KV: kv, Replica: "r0", Minute: time.Hour, PointsPerMinute: 10000, MaxConcurrent: maxConcurrent, MaxWait: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	tk, err := b.Acquire(t.Context(), reg(Registration))
	if err != nil {
		t.Fatal(err)
	}
	if err := tk.Done(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	return b
}

// A request whose admission was written but answered only after its
// caller's deadline gives its place back: otherwise the place stayed
// taken for as long as the process kept writing (each write renews its
// lease), and under load such places added up until housekeeping, which
// may fill only part of them, could not get one.
func TestAPlaceWrittenAfterItsCallerGaveUpComesBack(t *testing.T) {
	kv := &lateWrites{KeyValue: bucket(t)}
	b := lateBudget(t, kv, 1)
	kv.armed.Store(true)
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	if _, err := b.Acquire(ctx, reg(Registration)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Acquire past its deadline = %v, want context.DeadlineExceeded", err)
	}
	tk, err := b.Acquire(t.Context(), reg(Cleanup))
	if err != nil {
		t.Fatalf("the only place, taken for a caller that gave up, is not back: %v", err)
	}
	if err := tk.Done(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
}

// A write whose answer is lost was applied all the same: the request it
// admitted takes one place, not one more each time it is written again.
func TestAnAdmissionWhoseAnswerIsLostTakesOnePlace(t *testing.T) {
	kv := &lateWrites{KeyValue: bucket(t), lost: true}
	b := lateBudget(t, kv, 2)
	kv.armed.Store(true)
	tk, err := b.Acquire(t.Context(), reg(Registration))
	if err != nil {
		t.Fatalf("Acquire = %v, want a place", err)
	}
	if err := tk.Done(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	snaps, err := Snapshots(t.Context(), kv, Config{MaxConcurrent: 2})
	if err != nil || len(snaps) != 1 || snaps[0].InFlight != 0 {
		t.Fatalf("after the request was done: %+v, %v; want nothing in flight", snaps, err)
	}
}
