package lxdprov_test

import (
	"context"
	"errors"
	"maps"
	"net/netip"
	"strings"
	"testing"

	"github.com/canonical/lxd/shared/api"
	"github.com/google/go-cmp/cmp"

	"github.com/ephemera-ci/ephemera/internal/config"
	"github.com/ephemera-ci/ephemera/lxdprov"
	"github.com/ephemera-ci/ephemera/lxdprov/lxdfake"
	"github.com/ephemera-ci/ephemera/lxdprov/lxdtest"
	"github.com/ephemera-ci/ephemera/scaler"
)

func profile(name string, devices map[string]map[string]string) api.Profile {
	return api.Profile{Name: name, Config: map[string]string{}, Devices: devices}
}

// bridge is a managed bridge as LXD lists it, with settings of its own.
func bridge(name string) api.Network {
	return api.Network{Name: name, Type: "bridge", Managed: true, Config: map[string]string{
		"ipv4.address": "192.0.2.1/24", "ipv6.address": "2001:db8::1/64", "security.acls": "site-wide",
	}}
}

func guardedConfig(pools ...config.Pool) lxdprov.Config {
	cfg := fakeConfig(pools...)
	cfg.Network = config.RunnerNetwork{Name: "ephbr0", EgressDeny: config.DefaultEgressDeny()}
	return cfg
}

func TestEnsureNetworkGuardCreatesTheACLAndAttachesItKeepingTheNetworksOwnSettings(t *testing.T) {
	srv := newFake()
	srv.SetNetwork(bridge("ephbr0"))
	p := onFake(t, srv, guardedConfig())
	if err := p.EnsureNetworkGuard(t.Context()); err != nil {
		t.Fatalf("EnsureNetworkGuard: %v", err)
	}
	acl := srv.ACL(lxdprov.ACLName("ephbr0"))
	if acl == nil {
		t.Fatalf("no ACL %s", lxdprov.ACLName("ephbr0"))
	}
	deny, _ := config.RunnerNetwork{EgressDeny: config.DefaultEgressDeny()}.Deny()
	want := lxdprov.EgressACL("ephbr0", deny, []netip.AddrPort{netip.MustParseAddrPort("192.0.2.1:8081")})
	if diff := cmp.Diff(acl.Writable(), want); diff != "" {
		t.Errorf("ACL (-got +want):\n%s", diff)
	}
	wantNet := maps.Clone(bridge("ephbr0").Config)
	wantNet["security.acls"] = "site-wide," + lxdprov.ACLName("ephbr0")
	wantNet["security.acls.default.egress.action"] = "reject"
	if diff := cmp.Diff(srv.Network("ephbr0").Config, wantNet); diff != "" {
		t.Errorf("network config (-got +want):\n%s", diff)
	}

	t.Run("a second time writes nothing", func(t *testing.T) {
		before := writes(srv)
		if err := p.EnsureNetworkGuard(t.Context()); err != nil {
			t.Fatal(err)
		}
		if got := writes(srv); got != before {
			t.Errorf("writes went from %d to %d, want none", before, got)
		}
	})
	t.Run("a network edited by hand is put back, its other settings kept", func(t *testing.T) {
		n := srv.Network("ephbr0")
		n.Config["security.acls"] = "site-wide"
		n.Config["security.acls.default.egress.action"] = "allow"
		n.Config["dns.domain"] = "runners"
		srv.SetNetwork(*n)
		if err := p.EnsureNetworkGuard(t.Context()); err != nil {
			t.Fatal(err)
		}
		wantNet["dns.domain"] = "runners"
		if diff := cmp.Diff(srv.Network("ephbr0").Config, wantNet); diff != "" {
			t.Errorf("network config (-got +want):\n%s", diff)
		}
	})
}

// writes counts the fake's writes to networks and ACLs.
func writes(srv *lxdfake.Server) int {
	return srv.Count(lxdfake.UpdateNetwork) + srv.Count(lxdfake.CreateNetworkACL) + srv.Count(lxdfake.UpdateNetworkACL)
}

func TestEnsureNetworkGuardResolvesNamesAtEveryCall(t *testing.T) {
	srv := newFake()
	srv.SetNetwork(bridge("ephbr0"))
	cfg := guardedConfig()
	cfg.PolicyURL = "http://policy.example.com:8081"
	cfg.Network.EgressAllow = []string{"mirror.example.com:3128"}
	p := onFake(t, srv, cfg)
	addrs := map[string][]netip.Addr{
		"policy.example.com": {netip.MustParseAddr("192.0.2.10")},
		"mirror.example.com": {netip.MustParseAddr("192.0.2.20"), netip.MustParseAddr("2001:db8::20")},
	}
	failing := ""
	p.SetResolver(func(_ context.Context, host string) ([]netip.Addr, error) {
		if host == failing {
			return nil, errors.New("no such host")
		}
		return addrs[host], nil
	})
	rulesFor := func() []api.NetworkACLRule {
		t.Helper()
		if err := p.EnsureNetworkGuard(t.Context()); err != nil {
			t.Fatal(err)
		}
		return srv.ACL(lxdprov.ACLName("ephbr0")).Egress
	}
	checkProbes(t, rulesFor(), []probe{
		{"192.0.2.10", "tcp", 8081, "allow"},
		{"192.0.2.20", "tcp", 3128, "allow"},
		{"2001:db8::20", "tcp", 3128, "allow"},
	})

	// The policy service moves (into a denied range: only its port is open).
	addrs["policy.example.com"] = []netip.Addr{netip.MustParseAddr("127.0.0.9")}
	checkProbes(t, rulesFor(), []probe{
		{"127.0.0.9", "tcp", 8081, "allow"},
		{"127.0.0.9", "tcp", 22, "reject"},
	})

	// A name that cannot be resolved: an error naming it, nothing written.
	before := writes(srv)
	failing = "policy.example.com"
	err := p.EnsureNetworkGuard(t.Context())
	if err == nil || !strings.Contains(err.Error(), "policy.example.com") {
		t.Errorf("EnsureNetworkGuard = %v, want an error naming policy.example.com", err)
	}
	if writes(srv) != before {
		t.Error("a failed resolution wrote to LXD")
	}
}

func TestWithoutARunnerNetworkNothingAboutNetworksHappens(t *testing.T) {
	srv := newFake()
	p := onFake(t, srv, fakeConfig())
	if err := p.EnsureNetworkGuard(t.Context()); err != nil {
		t.Fatalf("EnsureNetworkGuard: %v", err)
	}
	spec := lxdtest.Spec("small")
	if err := p.Create(t.Context(), spec); err != nil {
		t.Fatal(err)
	}
	for _, c := range srv.Calls() {
		if strings.Contains(c.Method, "Network") {
			t.Errorf("call %v without a runner network", c)
		}
	}
	if devs := srv.Created()[0].Devices; len(devs) != 1 || devs["root"] == nil {
		t.Errorf("devices = %v, want the root disk alone", devs)
	}
}

func TestARunnerNetworkThatIsNotAManagedBridgeIsRefusedAtStart(t *testing.T) {
	for _, tc := range []struct {
		name string
		net  *api.Network
	}{
		{"a missing network", nil},
		{"an unmanaged bridge", &api.Network{Name: "ephbr0", Type: "bridge"}},
		{"an OVN network", &api.Network{Name: "ephbr0", Type: "ovn", Managed: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newFake()
			if tc.net != nil {
				srv.SetNetwork(*tc.net)
			}
			_, err := lxdprov.NewOnServer(t.Context(), guardedConfig(), srv)
			if !errors.Is(err, scaler.ErrMisconfigured) || !strings.Contains(err.Error(), "runners.network.name") {
				t.Errorf("NewOnServer = %v, want ErrMisconfigured naming runners.network.name", err)
			}
		})
	}
}

func TestRunnerNICsAreOnTheRunnerNetworkWithLayer2Filtering(t *testing.T) {
	filtered := func(dev map[string]string) map[string]string {
		out := maps.Clone(dev)
		maps.Copy(out, lxdprov.NICFilters)
		return out
	}
	for _, tc := range []struct {
		name     string
		devices  map[string]map[string]string
		want     map[string]map[string]string
		misconfd bool
	}{
		{"profiles without a NIC: eth0 on the runner network",
			nil,
			map[string]map[string]string{"eth0": filtered(map[string]string{"type": "nic", "network": "ephbr0", "name": "eth0"})}, false},
		{"a profile NIC on the runner network keeps its settings and gains the filters",
			map[string]map[string]string{"net0": {"type": "nic", "network": "ephbr0", "name": "eth0", "limits.egress": "100Mbit"}},
			map[string]map[string]string{"net0": filtered(map[string]string{"type": "nic", "network": "ephbr0", "name": "eth0", "limits.egress": "100Mbit"})}, false},
		{"a profile NIC on another network is refused",
			map[string]map[string]string{"eth1": {"type": "nic", "network": "lxdbr0"}}, nil, true},
		{"a profile NIC bridged by parent, outside the network's ACL, is refused",
			map[string]map[string]string{"eth0": {"type": "nic", "nictype": "bridged", "parent": "ephbr0"}}, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newFake()
			srv.SetNetwork(bridge("ephbr0"))
			srv.SetProfile(profile("net", tc.devices))
			pool := fakePool()
			pool.Profiles = []string{"default", "net"}
			p, err := lxdprov.NewOnServer(t.Context(), guardedConfig(pool), srv)
			if tc.misconfd {
				if !errors.Is(err, scaler.ErrMisconfigured) || !strings.Contains(err.Error(), "runners.network.name") {
					t.Errorf("NewOnServer = %v, want ErrMisconfigured naming runners.network.name", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := p.Create(t.Context(), lxdtest.Spec(pool.Name)); err != nil {
				t.Fatal(err)
			}
			got := srv.Created()[0].Devices
			tc.want["root"] = map[string]string{"type": "disk", "path": "/", "pool": "default", "size": "20GiB"}
			if diff := cmp.Diff(got, tc.want); diff != "" {
				t.Errorf("instance devices (-got +want):\n%s", diff)
			}
		})
	}
}

func TestABadRunnerNetworkSettingIsMisconfigurationNamingTheKey(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*config.RunnerNetwork)
		key  string
	}{
		{"a deny entry that is not a CIDR", func(n *config.RunnerNetwork) { n.EgressDeny = []string{"nonsense"} }, "runners.network.egress_deny[0]"},
		{"an allow entry without a port", func(n *config.RunnerNetwork) { n.EgressAllow = []string{"192.0.2.1"} }, "runners.network.egress_allow[0]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newFake()
			srv.SetNetwork(bridge("ephbr0"))
			cfg := guardedConfig()
			tc.edit(&cfg.Network)
			_, err := lxdprov.NewOnServer(t.Context(), cfg, srv)
			if !errors.Is(err, scaler.ErrMisconfigured) || !strings.Contains(err.Error(), tc.key) {
				t.Errorf("NewOnServer = %v, want ErrMisconfigured naming %s", err, tc.key)
			}
		})
	}
}
