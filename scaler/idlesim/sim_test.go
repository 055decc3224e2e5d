package idlesim

import (
	"slices"
	"testing"
	"time"
)

func TestTracesAreTheSameForTheSameSeed(t *testing.T) {
	for _, tc := range benchTraces {
		a, b, c := tc.trace(1), tc.trace(1), tc.trace(2)
		if !slices.Equal(a.Arrivals, b.Arrivals) {
			t.Errorf("%s: two traces of seed 1 differ", tc.name)
		}
		if slices.Equal(a.Arrivals, c.Arrivals) {
			t.Errorf("%s: seeds 1 and 2 gave the same trace", tc.name)
		}
		if !slices.IsSorted(a.Arrivals) || len(a.Arrivals) == 0 || a.Arrivals[len(a.Arrivals)-1] >= a.Length {
			t.Errorf("%s: arrivals not sorted within the trace's length", tc.name)
		}
	}
}

func TestDiurnalTraceIsQuietAtNightAndBusyInTheMorning(t *testing.T) {
	tr := Diurnal(1, 1)
	count := func(from, to time.Duration) int {
		i, _ := slices.BinarySearch(tr.Arrivals, from)
		j, _ := slices.BinarySearch(tr.Arrivals, to)
		return j - i
	}
	night, morning := count(2*time.Hour, 3*time.Hour), count(9*time.Hour+30*time.Minute, 10*time.Hour+30*time.Minute)
	if night > 120 || morning < 40*60 {
		t.Errorf("jobs 02:00-03:00 %d, 09:30-10:30 %d: want about 60 and about 3,300", night, morning)
	}
}

func TestWithoutABufferEveryJobWaitsForItsRunnerAndWithALargeOneNone(t *testing.T) {
	tr := Steady(1, 1, time.Hour) // one job a minute: runners never overlap
	none := Run(Config{Trace: tr, Boot: VM, Seed: 1})
	if none.Jobs == 0 || none.Waits[0] < 10*time.Second || none.IdleMinutes > 1 {
		t.Errorf("min_idle 0: shortest wait %s (want ≥ 10s, a VM's boot), idle minutes %.1f", none.Waits[0], none.IdleMinutes)
	}
	many := Run(Config{Trace: tr, Boot: VM, Seed: 1, Static: 5})
	// Only a job queued before the first buffer runners were online waits.
	if waited := many.FractionOver(0) * float64(many.Jobs); waited > 1 || many.IdleMinutes < 4.5*60 {
		t.Errorf("min_idle 5: %.0f jobs waited (want at most the first), idle minutes %.0f (want about 300)", waited, many.IdleMinutes)
	}
	if many.Registrations != many.Jobs+5 {
		t.Errorf("min_idle 5: %d registrations for %d jobs, want one per job and the 5 of the buffer", many.Registrations, many.Jobs)
	}
}
