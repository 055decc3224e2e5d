package config

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// withNetwork adds a runners section to validDoc.
func withNetwork(section string) string { return validDoc + "runners:\n  network:\n" + section }

func TestRunnerNetworkErrorsNameTheKey(t *testing.T) {
	secretsEnv(t)
	for _, tc := range []struct {
		name    string
		section string
		wantKey string
	}{
		{"a deny entry that is not a CIDR", "    name: ephbr0\n    egress_deny: [198.51.100.0/24, not-a-cidr]\n", "runners.network.egress_deny[1]"},
		{"a deny entry without a prefix length", "    name: ephbr0\n    egress_deny: [198.51.100.1]\n", "runners.network.egress_deny[0]"},
		{"a deny entry with a prefix too long", "    name: ephbr0\n    egress_deny: [198.51.100.0/33]\n", "runners.network.egress_deny[0]"},
		{"a deny entry with host bits set", "    name: ephbr0\n    egress_deny: [198.51.100.7/24]\n", "runners.network.egress_deny[0]"},
		{"an allow entry without a port", "    name: ephbr0\n    egress_allow: [192.0.2.1]\n", "runners.network.egress_allow[0]"},
		{"an allow entry with port zero", "    name: ephbr0\n    egress_allow: [\"192.0.2.1:0\"]\n", "runners.network.egress_allow[0]"},
		{"an allow entry with a port too large", "    name: ephbr0\n    egress_allow: [\"192.0.2.1:65536\"]\n", "runners.network.egress_allow[0]"},
		{"an allow entry with a named port", "    name: ephbr0\n    egress_allow: [\"192.0.2.1:http\"]\n", "runners.network.egress_allow[0]"},
		{"an allow entry with a bare IPv6 address", "    name: ephbr0\n    egress_allow: [\"2001:db8::1:443\"]\n", "runners.network.egress_allow[0]"},
		{"an allow entry whose host is not a name", "    name: ephbr0\n    egress_allow: [\"bad_host!:443\"]\n", "runners.network.egress_allow[0]"},
		{"an allow list without a network", "    egress_allow: [\"192.0.2.1:443\"]\n", "runners.network.name"},
		{"a network name too long for an interface", "    name: ephemera-runners\n", "runners.network.name"},
		{"a network name with a slash", "    name: a/b\n", "runners.network.name"},
		{"an unknown key", "    name: ephbr0\n    egress_denied: []\n", "runners.network.egress_denied"},
		{"a deny list that is not a list", "    name: ephbr0\n    egress_deny: 198.51.100.0/24\n", "runners.network.egress_deny"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseServe(t, withNetwork(tc.section))
			var ke *KeyError
			if !errors.As(err, &ke) {
				t.Fatalf("error %v is not a *KeyError", err)
			}
			if ke.Key != tc.wantKey {
				t.Errorf("error %q names key %q, want %q", err, ke.Key, tc.wantKey)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q is more than one line", err)
			}
		})
	}
}

func TestRunnerNetworkIsCheckedOnlyWhereTheScalerRuns(t *testing.T) {
	secretsEnv(t)
	doc := strings.ReplaceAll(withNetwork("    name: ephbr0\n    egress_deny: [nonsense]\n"), "  token_file: TOKEN_FILE\n", "")
	doc = strings.Replace(doc, "nats: { store_dir: /tmp/ephemera-nats }", `nats: { url: "nats://127.0.0.1:4222" }`, 1)
	if _, err := Parse([]byte(doc), RoleWebhook); err != nil {
		t.Errorf("webhook role: %v, want the runners section ignored", err)
	}
	var ke *KeyError
	if _, err := Parse([]byte(doc), RoleScaler); !errors.As(err, &ke) || ke.Key != "runners.network.egress_deny[0]" {
		t.Errorf("scaler role: %v, want an error naming runners.network.egress_deny[0]", err)
	}
}

func TestRunnerNetworkDefaultsAndParsing(t *testing.T) {
	secretsEnv(t)
	t.Run("no section: no guard, the default deny list", func(t *testing.T) {
		c, err := parseServe(t, validDoc)
		if err != nil {
			t.Fatal(err)
		}
		if c.Runners.Network.Name != "" {
			t.Errorf("name = %q, want empty (no guard)", c.Runners.Network.Name)
		}
		if diff := cmp.Diff(c.Runners.Network.EgressDeny, DefaultEgressDeny()); diff != "" {
			t.Errorf("egress_deny (-got +want):\n%s", diff)
		}
	})
	t.Run("an explicit empty deny list denies nothing", func(t *testing.T) {
		c, err := parseServe(t, withNetwork("    name: ephbr0\n    egress_deny: []\n"))
		if err != nil {
			t.Fatal(err)
		}
		if d, _ := c.Runners.Network.Deny(); len(d) != 0 {
			t.Errorf("Deny = %v, want none", d)
		}
	})
	t.Run("allow entries come parsed, the policy service's address last", func(t *testing.T) {
		c, err := parseServe(t, withNetwork("    name: ephbr0\n    egress_allow: [\"192.0.2.7:53\", \"[2001:db8::5]:443\", \"proxy.example.com:3128\", \"[::ffff:192.0.2.9]:80\"]\n"))
		if err != nil {
			t.Fatal(err)
		}
		got, err := c.Runners.Network.Allow(c.Policy.URL)
		if err != nil {
			t.Fatal(err)
		}
		want := []HostPort{{"192.0.2.7", 53}, {"2001:db8::5", 443}, {"proxy.example.com", 3128}, {"192.0.2.9", 80}, {"127.0.0.1", 8081}}
		if diff := cmp.Diff(got, want); diff != "" {
			t.Errorf("Allow (-got +want):\n%s", diff)
		}
	})
	t.Run("every default is a valid network", func(t *testing.T) {
		deny, err := RunnerNetwork{EgressDeny: DefaultEgressDeny()}.Deny()
		if err != nil {
			t.Fatal(err)
		}
		for _, probe := range []string{"10.1.2.3", "172.31.0.1", "192.168.1.1", "169.254.169.254", "127.0.0.1", "100.100.100.100", "::1", "fd00::1", "fe80::1", "::ffff:10.0.0.1", "64:ff9b::a00:1"} {
			a := netip.MustParseAddr(probe)
			denied := false
			for _, p := range deny {
				denied = denied || p.Contains(a)
			}
			if !denied {
				t.Errorf("%s is not in the default deny list", probe)
			}
		}
	})
}

func TestPolicyHostPortTakesTheSchemesPort(t *testing.T) {
	for _, tc := range []struct {
		url  string
		want HostPort
	}{
		{"http://192.0.2.1:8081/", HostPort{"192.0.2.1", 8081}},
		{"http://policy.example.com", HostPort{"policy.example.com", 80}},
		{"https://policy.example.com/x", HostPort{"policy.example.com", 443}},
		{"https://[2001:db8::1]", HostPort{"2001:db8::1", 443}},
	} {
		got, err := PolicyHostPort(tc.url)
		if err != nil || got != tc.want {
			t.Errorf("PolicyHostPort(%q) = %v, %v; want %v", tc.url, got, err, tc.want)
		}
	}
}
