package scaler_test

import (
	"context"
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/ephemera-ci/ephemera/scaler"
)

// BenchmarkCompletedJobMemory measures what remembering completed jobs
// for scaler.MaxJobAge costs in KV: it writes n records of BucketDone as
// the scaler writes them (an 11-digit job id, the completion time) and
// reports the stream's bytes per job, and what 10,000 jobs a day held for
// MaxJobAge come to on each replica's disk.
func BenchmarkCompletedJobMemory(b *testing.B) {
	const n = 20000
	p := pool("small", 0, 1)
	e := newEnv(b, p)
	e.start(e.config()) // creates the buckets as production does
	ctx := context.Background()
	kv, err := e.bus.JS.KeyValue(ctx, scaler.BucketDone)
	if err != nil {
		b.Fatal(err)
	}
	val, _ := json.Marshal(time.Now().UTC())
	b.ResetTimer()
	for range b.N {
		for i := range n {
			if _, err := kv.Put(ctx, strconv.FormatInt(31_000_000_000+int64(i), 10), val); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.StopTimer()
	st, err := kv.Status(ctx)
	if err != nil {
		b.Fatal(err)
	}
	perJob := float64(st.Bytes()) / float64(st.Values())
	held := 10000 * scaler.MaxJobAge.Hours() / 24
	b.ReportMetric(perJob, "bytes/job")
	b.ReportMetric(perJob*held/(1<<20), "MiB-at-10k-jobs/day")
	b.ReportMetric(held, "keys-at-10k-jobs/day")
}
