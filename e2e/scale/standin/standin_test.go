package standin

import (
	"errors"
	"math/rand/v2"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ephemera-ci/ephemera/internal/waitfor"
	"github.com/ephemera-ci/ephemera/scaler"
)

func TestLogNormalHasTheMedianAndTailItWasFittedTo(t *testing.T) {
	d := LogNormal{P50: 1500 * time.Millisecond, P99: 3700 * time.Millisecond}
	r := rand.New(rand.NewPCG(1, 2))
	xs := make([]time.Duration, 20000)
	for i := range xs {
		xs[i] = d.Sample(r)
	}
	slices.Sort(xs)
	p50, p99 := xs[len(xs)/2], xs[len(xs)*99/100]
	if p50 < 1400*time.Millisecond || p50 > 1600*time.Millisecond || p99 < 3300*time.Millisecond || p99 > 4100*time.Millisecond {
		t.Errorf("sampled p50 %s, p99 %s; want about 1.5 s and 3.7 s", p50, p99)
	}
	if s := d.Scaled(10).(LogNormal); s.P50 != 150*time.Millisecond || s.P99 != 370*time.Millisecond {
		t.Errorf("scaled by 10: %v", s)
	}
}

func TestUniformStaysWithinItsBounds(t *testing.T) {
	d := VM().Boot
	r := rand.New(rand.NewPCG(3, 4))
	for range 1000 {
		if x := d.Sample(r); x < 10*time.Second || x > 20*time.Second {
			t.Fatalf("VM boot %s outside 10-20 s", x)
		}
	}
}

func TestInstancesLiveAsTheProfileSaysAndRunnersComeOnline(t *testing.T) {
	var mu sync.Mutex
	var online, gone []string
	s, err := New(Config{
		Profile: Profile{Create: Uniform{Min: 50 * time.Millisecond, Max: 50 * time.Millisecond}, Delete: Uniform{}},
		Online:  func(name string) error { mu.Lock(); defer mu.Unlock(); online = append(online, name); return nil },
		Gone:    func(name string) { mu.Lock(); defer mu.Unlock(); gone = append(gone, name) },
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	c := NewClient(srv.URL)
	ctx := t.Context()

	start := time.Now()
	if err := c.Create(ctx, scaler.InstanceSpec{Name: "eph-a-1", Pool: "a", JobID: 7, JITConfig: "secret"}); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < 50*time.Millisecond {
		t.Errorf("create returned after %s, before its 50 ms", took)
	}
	if err := c.Create(ctx, scaler.InstanceSpec{Name: "eph-a-1", Pool: "a"}); !errors.Is(err, scaler.ErrInstanceExists) {
		t.Errorf("second create = %v, want ErrInstanceExists", err)
	}
	waitfor.True(t, 5*time.Second, "the runner online", func() bool { mu.Lock(); defer mu.Unlock(); return len(online) == 1 })
	list, err := c.List(ctx)
	if err != nil || len(list) != 1 || list[0].State != scaler.StateRunning || list[0].JobID != 7 {
		t.Fatalf("list = %+v, %v; want eph-a-1 running for job 7", list, err)
	}
	if r := s.Records(); len(r) != 1 || r[0].OnlineAt.IsZero() || r[0].RunningAt.Before(r[0].AskedAt) {
		t.Errorf("records %+v", r)
	}
	if err := c.Delete(ctx, "eph-a-1"); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(ctx, "eph-a-1"); err != nil {
		t.Errorf("deleting what is gone = %v, want success", err)
	}
	mu.Lock()
	if !slices.Equal(gone, []string{"eph-a-1"}) {
		t.Errorf("gone = %v: a deleted instance's runner must vanish", gone)
	}
	mu.Unlock()

	if err := c.Create(ctx, scaler.InstanceSpec{Name: "eph-a-2", Pool: "a"}); err != nil {
		t.Fatal(err)
	}
	s.Exit("eph-a-2") // its runner finished its job: the instance powers off
	waitfor.True(t, 5*time.Second, "the exited instance gone", func() bool { return s.Instances() == 0 })
	if st := s.Stats(); st.Creates != 2 || st.Deletes != 1 || st.Exits != 1 {
		t.Errorf("stats %+v", st)
	}
}
