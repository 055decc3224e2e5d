// Package scale is the scale harness (issue 12 item 1): the real webhook
// receiver (cmd/ephemera webhook) and scaler replicas (e2e/scale/replica:
// the scaler with the provisioner stand-in of e2e/scale/standin in place
// of LXD) as separate processes against a three-node NATS cluster, the
// GitHub stand-in (internal/githubfake) as GitHub, its runner broker as
// the runners. Its benchmarks (bench_test.go) drive it with hundreds to
// thousands of jobs and report what the issue asks: latencies, GitHub
// requests per job by kind, rate-limit answers, reconcile cost, NATS
// operations per job, and each replica's CPU and peak memory. `make
// bench` runs them. The smoke test of the harness itself takes about a
// minute on the shared 2-core machine (building three commands, starting
// six processes), more than `make test` should spend on it, so it runs
// only with EPHEMERA_SCALE_SMOKE=1.
package scale

import (
	"flag"
	"os"
	"testing"

	"github.com/ephemera-ci/ephemera/e2e/e2etest"
)

// The commands the harness starts as processes, built once.
var ephemeraBin, replicaBin string

// smokeEnv enables TestHarnessSmoke.
const smokeEnv = "EPHEMERA_SCALE_SMOKE"

func TestMain(m *testing.M) {
	flag.Parse()
	if b := flag.Lookup("test.bench"); (b == nil || b.Value.String() == "") && os.Getenv(smokeEnv) != "1" {
		os.Exit(m.Run()) // nothing here runs: build nothing
	}
	e2etest.MainWithCommands(m, map[string]*string{"./cmd/ephemera": &ephemeraBin, "./e2e/scale/replica": &replicaBin})
}
