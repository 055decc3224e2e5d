package lxdprov_test

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sync/atomic"
	"testing"

	lxd "github.com/canonical/lxd/client"
	"github.com/canonical/lxd/shared/api"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/ephemera-ci/ephemera/internal/config"
	"github.com/ephemera-ci/ephemera/lxdprov"
	"github.com/ephemera-ci/ephemera/lxdprov/lxdtest"
)

// countingLXD is the real LXD client, counting the ACL writes.
type countingLXD struct {
	lxd.InstanceServer
	writes atomic.Int64
}

func (c *countingLXD) CreateNetworkACL(acl api.NetworkACLsPost) error {
	c.writes.Add(1)
	return c.InstanceServer.CreateNetworkACL(acl)
}

func (c *countingLXD) UpdateNetworkACL(name string, acl api.NetworkACLPut, etag string) error {
	c.writes.Add(1)
	return c.InstanceServer.UpdateNetworkACL(name, acl, etag)
}

// defaultDeny is config.DefaultEgressDeny, parsed.
func defaultDeny(t *testing.T) []netip.Prefix {
	t.Helper()
	deny, err := config.RunnerNetwork{EgressDeny: config.DefaultEgressDeny()}.Deny()
	if err != nil {
		t.Fatal(err)
	}
	return deny
}

// readACL reads the ACL back from LXD.
func readACL(t *testing.T, c lxd.InstanceServer, name string) api.NetworkACLPut {
	t.Helper()
	acl, _, err := c.GetNetworkACL(name)
	if err != nil {
		t.Fatalf("read ACL %s back: %v", name, err)
	}
	return acl.Writable()
}

// No network is created or touched here (LXD bridges use private ranges,
// which this machine must not route): the ACL is made, read back and
// changed on its own, attached to nothing.
func TestTheEgressACLIsCreatedUpdatedAndLeftAloneInTheRealLXD(t *testing.T) {
	t.Parallel()
	c := &countingLXD{InstanceServer: lxdtest.Client(t)}
	name := fmt.Sprintf("t-acl-%06d", rand.IntN(1e6))
	t.Cleanup(func() {
		if err := c.DeleteNetworkACL(name); err != nil {
			t.Errorf("cleanup: delete ACL %s: %v", name, err)
		}
	})
	deny := defaultDeny(t)
	policy := netip.MustParseAddrPort("127.0.0.1:8081")
	want := lxdprov.EgressACL("ephbr0", deny, []netip.AddrPort{policy})

	ensure := func(want api.NetworkACLPut, outcome string, writes int64) {
		t.Helper()
		before := c.writes.Load()
		got, err := lxdprov.EnsureACL(c, name, want)
		if err != nil {
			t.Fatalf("EnsureACL: %v", err)
		}
		if got != outcome || c.writes.Load()-before != writes {
			t.Errorf("EnsureACL = %s with %d writes, want %s with %d", got, c.writes.Load()-before, outcome, writes)
		}
		if diff := cmp.Diff(readACL(t, c, name), want, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("ACL as LXD holds it (-got +want):\n%s", diff)
		}
	}

	t.Log("missing: created")
	ensure(want, "created", 1)
	t.Log("equal: nothing written (LXD hands the rules back exactly as sent)")
	ensure(want, "unchanged", 0)

	t.Log("as LXD evaluates what it holds: the policy port through, the rest of its host and every denied range refused, the internet open")
	rules := readACL(t, c, name).Egress
	checkProbes(t, rules, append(deniedProbes(deny),
		probe{"127.0.0.1", "tcp", 8081, "allow"},
		probe{"127.0.0.1", "tcp", 22, "reject"},
		probe{"127.0.0.1", "icmp4", 0, "reject"},
		probe{"192.0.2.1", "tcp", 443, "allow"},
		probe{"2001:db8::1", "tcp", 443, "allow"},
		probe{"192.0.2.1", "icmp4", 0, "allow"},
	))
	for i, r := range rules {
		if r.Action != "allow" {
			t.Errorf("egress rule %d is %q: a drop or reject rule would be evaluated before every allow rule and could shadow an exception", i, r.Action)
		}
	}

	t.Log("settings changed: updated")
	deny2 := append(deny, netip.MustParsePrefix("203.0.113.0/24"))
	want2 := lxdprov.EgressACL("ephbr0", deny2, []netip.AddrPort{policy, netip.MustParseAddrPort("[2001:db8::5]:53")})
	ensure(want2, "updated", 1)
	checkProbes(t, readACL(t, c, name).Egress, []probe{
		{"203.0.113.9", "tcp", 443, "reject"},
		{"2001:db8::5", "udp", 53, "allow"},
		{"2001:db8::5", "tcp", 53, "allow"},
		{"2001:db8::5", "tcp", 22, "allow"}, // not in a denied range: open like the rest
		{"127.0.0.1", "tcp", 8081, "allow"},
	})

	t.Log("edited by hand (a reject-all added, a rule removed): put back")
	edited := readACL(t, c, name)
	edited.Egress = append(edited.Egress[1:], api.NetworkACLRule{Action: "reject", Destination: "0.0.0.0/0", State: "enabled"})
	if err := c.InstanceServer.UpdateNetworkACL(name, edited, ""); err != nil {
		t.Fatal(err)
	}
	ensure(want2, "updated", 1)
}
