package scaler_test

import (
	"testing"
	"time"

	"github.com/ephemera-ci/ephemera/internal/jobs"
	"github.com/ephemera-ci/ephemera/internal/waitfor"
)

// A completed event delivered twice (GitHub's redelivery, the reconciler's
// redelivery of a delivery that failed after it was stored) finds the
// claim completed already and is acked: before, the second one took "no
// change" for "no claim", tried to create a tombstone over the claim and
// was delivered again every CapacityRetry, for ever.
func TestACompletedEventDeliveredTwiceIsHandledOnceAndAcked(t *testing.T) {
	p := pool("small", 0, 2)
	e := newEnv(t, p)
	e.start(e.config())
	const job = 515151
	ev := jobs.Event{Action: jobs.Completed, JobID: job, Pool: "small", Repository: "acme/app", Conclusion: "cancelled", CreatedAt: time.Now().UTC()}
	seq := e.publish(ev)
	waitfor.True(t, 5*time.Second, "the first completed event to be handled", e.handled(seq))
	seq = e.publish(ev)
	waitfor.True(t, 5*time.Second, "the second completed event to be acked", e.handled(seq))
	if c, ok := e.claim(job); !ok || !c.Completed {
		t.Errorf("claim %+v (found %v), want completed", c, ok)
	}
}
