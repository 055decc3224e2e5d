package main

import (
	"encoding/json"
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
BenchmarkQueuedToCreate/2/s-2   	1	 3.1 p99-ms
ok  	github.com/ephemera-ci/ephemera/scaler	1.0s
pkg: github.com/ephemera-ci/ephemera/lxdprov
BenchmarkLXDBusyboxContainers-2   	1	 1.103 con20-delete-p50-vs-raw	 2141 con20-delete-p50-ms
ok  	github.com/ephemera-ci/ephemera/lxdprov	60.0s
`

func TestParseKeepsEveryFigureWithItsCommandAndAim(t *testing.T) {
	res, err := parse(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	yes, no := true, false
	intake := "go test -run '^$' -bench '^BenchmarkIntake$' -benchtime 1x ./webhook/"
	lxd := "go test -run '^$' -bench '^BenchmarkLXDBusyboxContainers$' -benchtime 1x ./lxdprov/"
	want := []figure{
		{Package: "github.com/ephemera-ci/ephemera/webhook", Benchmark: "BenchmarkIntake", Metric: "full-deliveries/s", Value: 12401, Aim: "≥ 5,000/s", AimMet: &yes, Command: intake},
		{Package: "github.com/ephemera-ci/ephemera/webhook", Benchmark: "BenchmarkIntake", Metric: "full-p99-ms", Value: 15, Aim: "< 20 ms", AimMet: &yes, Command: intake},
		{Package: "github.com/ephemera-ci/ephemera/webhook", Benchmark: "BenchmarkIntake", Metric: "full/bare-%", Value: 94.1, Aim: "≥ 90%", AimMet: &yes, Command: intake},
		{Package: "github.com/ephemera-ci/ephemera/scaler", Benchmark: "BenchmarkQueuedToCreate/2/s", Metric: "p99-ms", Value: 3.1, Aim: "< 50 ms", AimMet: &yes, Command: "go test -run '^$' -bench '^BenchmarkQueuedToCreate$' -benchtime 1x ./scaler/"},
		{Package: "github.com/ephemera-ci/ephemera/lxdprov", Benchmark: "BenchmarkLXDBusyboxContainers", Metric: "con20-delete-p50-vs-raw", Value: 1.103, Aim: "≤ 1.10", AimMet: &no, Command: lxd},
		{Package: "github.com/ephemera-ci/ephemera/lxdprov", Benchmark: "BenchmarkLXDBusyboxContainers", Metric: "con20-delete-p50-ms", Value: 2141, Command: lxd},
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

func TestAMissedAimIsMarkedInTheTableAndTheJSON(t *testing.T) {
	res, err := parse(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	print(&out, res)
	var lxdRow, intakeRow string
	for _, line := range strings.Split(out.String(), "\n") {
		switch {
		case strings.HasPrefix(line, "BenchmarkLXDBusyboxContainers ") && strings.Contains(line, "con20-delete-p50-vs-raw"):
			lxdRow = line
		case strings.HasPrefix(line, "BenchmarkIntake ") && strings.Contains(line, "full-p99-ms"):
			intakeRow = line
		}
	}
	if !strings.Contains(lxdRow, "MISSED") {
		t.Errorf("the row of 1.103 against ≤ 1.10 is not marked MISSED: %q", lxdRow)
	}
	if strings.Contains(intakeRow, "MISSED") || !strings.Contains(intakeRow, "yes") {
		t.Errorf("the row of 15 against < 20 ms is not marked met: %q", intakeRow)
	}
	if !strings.Contains(out.String(), "1 aim(s) MISSED:\n  BenchmarkLXDBusyboxContainers con20-delete-p50-vs-raw = 1.103, aim ≤ 1.10\n") {
		t.Errorf("no summary of the missed aim:\n%s", out.String())
	}
	b, err := json.Marshal(res.Figures[4])
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"aim":"≤ 1.10","aim_met":false`) {
		t.Errorf("JSON of the missed figure: %s", b)
	}
	b, _ = json.Marshal(res.Figures[5])
	if strings.Contains(string(b), "aim") {
		t.Errorf("JSON of a figure without an aim mentions one: %s", b)
	}
}

func TestAimsAreParsedAndCompared(t *testing.T) {
	cases := []struct {
		aim   string
		value float64
		met   bool
	}{
		{"≤ 1.10", 1.10, true},
		{"≤ 1.10", 1.103, false},
		{"≤ 1.10", 0.58, true},
		{"< 20 ms", 19.99, true},
		{"< 20 ms", 20, false},
		{"≥ 5,000/s", 5000, true},
		{"≥ 5,000/s", 4999.9, false},
		{"≥ 90%", 97.06, true},
		{"> 0", 0, false},
		{"<= 2.5", 2.5, true},
		{">= 1,000,000 ops", 999999, false},
		{"< 0.1", 0.02, true},
	}
	for _, tc := range cases {
		a, err := parseAim(tc.aim)
		if err != nil {
			t.Errorf("parseAim(%q): %v", tc.aim, err)
			continue
		}
		if got := a.met(tc.value); got != tc.met {
			t.Errorf("%v against %q: met = %v, want %v", tc.value, tc.aim, got, tc.met)
		}
	}
	for _, bad := range []string{"", "fast", "1.10", "≈ 1.10", "≤", "≤ x ms", "≤ ,5"} {
		if _, err := parseAim(bad); err == nil {
			t.Errorf("parseAim(%q) accepted", bad)
		}
	}
}

func TestEveryAimParses(t *testing.T) {
	for k, v := range aims {
		if _, err := parseAim(v); err != nil {
			t.Errorf("aims[%q]: %v", k, err)
		}
	}
}
