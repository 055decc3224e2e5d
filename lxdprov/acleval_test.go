package lxdprov_test

import (
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/canonical/lxd/shared/api"
)

// verdict is what LXD does with an egress packet to dst (proto "tcp",
// "udp" or "icmp4"/"icmp6", port 0 for ICMP), following LXD's documented
// evaluation (doc/howto/network_acls.md, "Rule ordering and priorities"):
// the order of the list does not matter; every drop rule is tried, then
// every reject rule, then every allow rule, and unmatched traffic gets the
// network's default egress action, which the guard sets to reject.
func verdict(t *testing.T, rules []api.NetworkACLRule, dst netip.Addr, proto string, port int) string {
	t.Helper()
	for _, action := range []string{"drop", "reject", "allow"} {
		for _, r := range rules {
			if r.Action == action && r.State != "disabled" && matches(t, r, dst, proto, port) {
				return action
			}
		}
	}
	return "reject"
}

func matches(t *testing.T, r api.NetworkACLRule, dst netip.Addr, proto string, port int) bool {
	t.Helper()
	if r.Protocol != "" && r.Protocol != proto {
		return false
	}
	if r.Destination != "" && !inSubjects(t, r.Destination, dst) {
		return false
	}
	if r.DestinationPort != "" && !inPorts(t, r.DestinationPort, port) {
		return false
	}
	return true
}

func inSubjects(t *testing.T, list string, a netip.Addr) bool {
	t.Helper()
	for _, s := range strings.Split(list, ",") {
		s = strings.TrimSpace(s)
		if lo, hi, ok := strings.Cut(s, "-"); ok {
			l, h := netip.MustParseAddr(lo), netip.MustParseAddr(hi)
			if a.Compare(l) >= 0 && a.Compare(h) <= 0 {
				return true
			}
			continue
		}
		if !strings.Contains(s, "/") {
			if netip.MustParseAddr(s) == a {
				return true
			}
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			t.Fatalf("rule subject %q: %v", s, err)
		}
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func inPorts(t *testing.T, list string, port int) bool {
	t.Helper()
	for _, s := range strings.Split(list, ",") {
		lo, hi, ok := strings.Cut(strings.TrimSpace(s), "-")
		if !ok {
			hi = lo
		}
		l, err1 := strconv.Atoi(lo)
		h, err2 := strconv.Atoi(hi)
		if err1 != nil || err2 != nil {
			t.Fatalf("rule port %q is not a port or range", s)
		}
		if port >= l && port <= h {
			return true
		}
	}
	return false
}

// probe is a packet and what the guard must do with it.
type probe struct {
	dst   string
	proto string
	port  int
	want  string
}

// checkProbes evaluates every probe against rules.
func checkProbes(t *testing.T, rules []api.NetworkACLRule, probes []probe) {
	t.Helper()
	for _, p := range probes {
		if got := verdict(t, rules, netip.MustParseAddr(p.dst), p.proto, p.port); got != p.want {
			t.Errorf("egress to %s %s/%d: LXD would %s, want %s", p.dst, p.proto, p.port, got, p.want)
		}
	}
}

// deniedProbes is one probe per denied prefix: its second address, over
// TCP to port 443, rejected.
func deniedProbes(deny []netip.Prefix) []probe {
	var out []probe
	for _, p := range deny {
		out = append(out, probe{p.Addr().Next().String(), "tcp", 443, "reject"})
	}
	return out
}
