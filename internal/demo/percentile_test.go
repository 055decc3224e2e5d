package demo

import (
	"testing"
	"time"
)

func TestPercentileIsTheNearestRank(t *testing.T) {
	var hundred []time.Duration
	for i := 100; i >= 1; i-- { // unsorted on purpose
		hundred = append(hundred, time.Duration(i)*time.Millisecond)
	}
	cases := []struct {
		name string
		d    []time.Duration
		p    int
		want time.Duration
	}{
		{"none is zero", nil, 50, 0},
		{"one is itself at any percentile", []time.Duration{7}, 99, 7},
		{"the median of 1..100 ms is 50 ms", hundred, 50, 50 * time.Millisecond},
		{"the 99th of 1..100 ms is 99 ms", hundred, 99, 99 * time.Millisecond},
		{"the 99th of three is the largest", []time.Duration{3, 1, 2}, 99, 3},
		{"the median of three is the middle", []time.Duration{3, 1, 2}, 50, 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := Percentile(tc.d, tc.p); got != tc.want {
				t.Errorf("Percentile(%d) = %s, want %s", tc.p, got, tc.want)
			}
		})
	}
	if hundred[0] != 100*time.Millisecond {
		t.Error("Percentile sorted its argument in place")
	}
}
