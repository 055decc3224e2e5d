package lxdprov

import (
	"errors"
	"strings"
	"testing"

	"github.com/ephemera-ci/ephemera/internal/config"
	"github.com/ephemera-ci/ephemera/scaler"
)

func TestPolicyURLsThatCouldInjectAreRefused(t *testing.T) {
	for _, tc := range []struct {
		url string
		ok  bool
	}{
		{"http://192.0.2.1:8081", true},
		{"https://policy.example.com/ephemera/v1", true},
		{"http://[::1]:8081/", true},
		{"", false},
		{"ftp://192.0.2.1", false},
		{`http://x/"; poweroff; "`, false},
		{"http://x/$(poweroff)", false},
		{"http://x/`poweroff`", false},
		{"http://x/\nEPHEMERA_POLICY_TOKEN=stolen", false},
		{"http://x/'a'", false},
		{"http://x/a b", false},
		{"http://x/?a=1&poweroff", false},
		{"http://x/#frag", false},
		{"http://user:pass@x/", false},
		{"http://x/a;poweroff", false},
	} {
		err := checkPolicyURL(tc.url)
		if (err == nil) != tc.ok {
			t.Errorf("checkPolicyURL(%q) = %v, want ok=%t", tc.url, err, tc.ok)
		}
	}
}

func TestSpecValuesThatCouldInjectAreRefused(t *testing.T) {
	good := scaler.InstanceSpec{Name: "eph-small-a1b2", Pool: "small", JobID: 1, JITConfig: testJIT, PolicyToken: testToken}
	if err := checkSpec(good); err != nil {
		t.Fatalf("checkSpec(good) = %v", err)
	}
	for _, tc := range []struct {
		name   string
		change func(*scaler.InstanceSpec)
	}{
		{"a name with a quote", func(s *scaler.InstanceSpec) { s.Name = `eph-"x` }},
		{"a name with $()", func(s *scaler.InstanceSpec) { s.Name = "eph-$(x)" }},
		{"a name with a newline", func(s *scaler.InstanceSpec) { s.Name = "eph-x\ny" }},
		{"a name in upper case", func(s *scaler.InstanceSpec) { s.Name = "Eph-x" }},
		{"a name starting with a digit", func(s *scaler.InstanceSpec) { s.Name = "1eph" }},
		{"a name ending with a dash", func(s *scaler.InstanceSpec) { s.Name = "eph-" }},
		{"a name of 64 characters", func(s *scaler.InstanceSpec) { s.Name = "e" + strings.Repeat("x", 63) }},
		{"an empty JIT config", func(s *scaler.InstanceSpec) { s.JITConfig = "" }},
		{"a JIT config with a space", func(s *scaler.InstanceSpec) { s.JITConfig = "abc def" }},
		{"a JIT config with a backtick", func(s *scaler.InstanceSpec) { s.JITConfig = "abc`x`" }},
		{"a JIT config with a quote", func(s *scaler.InstanceSpec) { s.JITConfig = `abc"` }},
		{"a JIT config with a newline", func(s *scaler.InstanceSpec) { s.JITConfig = "abc\nruncmd: [x]" }},
		{"a short token", func(s *scaler.InstanceSpec) { s.PolicyToken = "abc" }},
		{"a token with a newline", func(s *scaler.InstanceSpec) { s.PolicyToken = testToken[:63] + "\n" }},
		{"a token in upper case", func(s *scaler.InstanceSpec) { s.PolicyToken = strings.ToUpper(testToken) }},
		{"a negative job id", func(s *scaler.InstanceSpec) { s.JobID = -1 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := good
			tc.change(&s)
			err := checkSpec(s)
			if !errors.Is(err, scaler.ErrMisconfigured) {
				t.Fatalf("checkSpec = %v, want ErrMisconfigured", err)
			}
			if strings.Contains(err.Error(), testJIT) || strings.Contains(err.Error(), testToken) {
				t.Errorf("the error shows a secret: %v", err)
			}
		})
	}
}

func TestPoolNamesThatCouldInjectAreRefused(t *testing.T) {
	for _, name := range []string{`a"b`, "a$(b)", "a`b`", "a\nb", "a b", "A", "-a", "a-", "", strings.Repeat("a", 31)} {
		pc := testPool()
		pc.Name = name
		if err := checkPool(pc); !errors.Is(err, scaler.ErrMisconfigured) {
			t.Errorf("checkPool(name %q) = %v, want ErrMisconfigured", name, err)
		}
	}
	pc := testPool()
	pc.InstanceType = "vm"
	if err := checkPool(pc); !errors.Is(err, scaler.ErrMisconfigured) {
		t.Errorf("checkPool(instance_type vm) = %v, want ErrMisconfigured", err)
	}
	for _, typ := range []string{config.InstanceVM, config.InstanceContainer} {
		pc := testPool()
		pc.InstanceType = typ
		if err := checkPool(pc); err != nil {
			t.Errorf("checkPool(%s) = %v", typ, err)
		}
	}
}
