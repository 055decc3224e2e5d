package lxdprov

import (
	"errors"
	"testing"

	"github.com/ephemera-ci/ephemera/scaler"
)

// These fail before any LXD request: the provider has no server at all.
func TestCreateRefusesWhatCanNeverSucceed(t *testing.T) {
	m, err := newMetrics(nil)
	if err != nil {
		t.Fatal(err)
	}
	p := &Provider{pools: map[string]*pool{"small": {cfg: testPool()}}, hook: testHook, policyURL: testURL, metrics: m}
	good := scaler.InstanceSpec{Name: "eph-small-1", Pool: "small", JITConfig: testJIT, PolicyToken: testToken}
	for _, tc := range []struct {
		name   string
		change func(*scaler.InstanceSpec)
	}{
		{"an unknown pool", func(s *scaler.InstanceSpec) { s.Pool = "big" }},
		{"a JIT config that is not base64", func(s *scaler.InstanceSpec) { s.JITConfig = "$(poweroff)" }},
		{"a policy token that is not one", func(s *scaler.InstanceSpec) { s.PolicyToken = "x" }},
		{"an invalid name", func(s *scaler.InstanceSpec) { s.Name = "Eph_1" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := good
			tc.change(&s)
			if err := p.Create(t.Context(), s); !errors.Is(err, scaler.ErrMisconfigured) {
				t.Errorf("Create = %v, want ErrMisconfigured", err)
			}
		})
	}
}
