package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestShipsNoFake checks that the production binary links neither the
// GitHub stand-in nor net/http/httptest: the demo, which needs both, is a
// command of its own (cmd/ephemera-demo).
func TestShipsNoFake(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 50 {
		t.Fatalf("go list -deps listed %d packages; expected ephemera's whole dependency graph", len(deps))
	}
	for _, d := range deps {
		switch d {
		case "github.com/ephemera-ci/ephemera/internal/githubfake", "github.com/ephemera-ci/ephemera/internal/demo", "net/http/httptest":
			t.Errorf("cmd/ephemera depends on %s", d)
		}
	}
}
