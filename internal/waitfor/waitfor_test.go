package waitfor

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

func TestWithinReturnsOnceTheConditionHolds(t *testing.T) {
	var n atomic.Int32
	go func() {
		for range 3 {
			n.Add(1)
		}
	}()
	if err := Within(5*time.Second, func() bool { return n.Load() == 3 }); err != nil {
		t.Fatalf("Within: %v", err)
	}
}

func TestWithinTimesOutOnAConditionThatNeverHolds(t *testing.T) {
	err := Within(3*Interval, func() bool { return false })
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("Within = %v, want ErrTimeout", err)
	}
}
