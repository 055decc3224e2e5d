package main

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const sample = `goos: linux
goarch: amd64
pkg: github.com/ephemera-ci/ephemera/webhook
cpu: Intel(R) Xeon(R) Processor
BenchmarkIntake-2   	       1	  1000 ns/op	     12401 full-deliveries/s	        15.0 full-p99-ms	        94.1 full/bare-%
PASS
pkg: github.com/ephemera-ci/ephemera/scaler
BenchmarkQueuedToCreate/200/s-2   	1	 3.1 p99-ms
ok  	github.com/ephemera-ci/ephemera/scaler	1.0s
`

func TestParseKeepsEveryFigureWithItsCommandAndAim(t *testing.T) {
	res, err := parse(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	want := []figure{
		{"github.com/ephemera-ci/ephemera/webhook", "BenchmarkIntake", "full-deliveries/s", 12401, "≥ 5,000/s", "go test -run '^$' -bench '^BenchmarkIntake$' -benchtime 1x ./webhook/"},
		{"github.com/ephemera-ci/ephemera/webhook", "BenchmarkIntake", "full-p99-ms", 15, "< 20 ms", "go test -run '^$' -bench '^BenchmarkIntake$' -benchtime 1x ./webhook/"},
		{"github.com/ephemera-ci/ephemera/webhook", "BenchmarkIntake", "full/bare-%", 94.1, "≥ 90%", "go test -run '^$' -bench '^BenchmarkIntake$' -benchtime 1x ./webhook/"},
		{"github.com/ephemera-ci/ephemera/scaler", "BenchmarkQueuedToCreate/200/s", "p99-ms", 3.1, "< 50 ms", "go test -run '^$' -bench '^BenchmarkQueuedToCreate$' -benchtime 1x ./scaler/"},
	}
	if d := cmp.Diff(res.Figures, want); d != "" {
		t.Errorf("figures (-got +want):\n%s", d)
	}
	if !strings.HasPrefix(res.Machine, "Intel(R) Xeon(R) Processor, linux/") {
		t.Errorf("machine = %q", res.Machine)
	}
}

func TestParseRefusesInputWithoutFigures(t *testing.T) {
	if _, err := parse(strings.NewReader("PASS\nok x 1s\n")); err == nil {
		t.Error("no error for input with no benchmark lines")
	}
}
