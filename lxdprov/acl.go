package lxdprov

import (
	"fmt"
	"maps"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/canonical/lxd/shared/api"
)

// The runner network's ACL is an allowlist, because of how LXD evaluates
// rules: not in list order but by action — every drop rule, then every
// reject rule, then every allow rule, then the network's default action.
// An allow rule can therefore never make an exception to a reject rule
// (the policy service usually lives inside a denied private range). So the
// ACL holds only allow rules — one per allowed port (TCP and UDP) for the
// egress_allow addresses, and one per address family for everything
// outside egress_deny — and the network's default egress action, reject,
// refuses the rest: the denied ranges and the allowed hosts' other ports
// and protocols. No rule shadows another, whatever the order.

// ACLName is the name of the ACL that guards the runner network network.
// LXD ACL names allow letters, digits and dashes only.
func ACLName(network string) string {
	return "ephemera-egress-" + strings.Map(func(r rune) rune {
		if r == '_' || r == '.' {
			return '-'
		}
		return r
	}, network)
}

// Keys and values ephemera sets on the runner network and its ACL.
const (
	keyNetworkACLs       = "security.acls"
	keyNetworkEgressDflt = "security.acls.default.egress.action"
	// keyACLDeny records egress_deny on the ACL, for the operator who reads
	// it: the rules hold its complement.
	keyACLDeny = "user.ephemera.egress_deny"
)

// endpoint is one address and port runners may reach.
type endpoint struct {
	addr netip.Addr
	port uint16
}

// egressACL is the ACL that lets runners reach everything outside deny, and
// each of allow's ports on its addresses.
func egressACL(network string, deny []netip.Prefix, allow []endpoint) api.NetworkACLPut {
	var rules []api.NetworkACLRule
	byPort := map[uint16][]netip.Addr{}
	for _, e := range allow {
		byPort[e.port] = append(byPort[e.port], e.addr.Unmap())
	}
	for _, port := range slices.Sorted(maps.Keys(byPort)) {
		addrs := slices.SortedFunc(slices.Values(byPort[port]), netip.Addr.Compare)
		addrs = slices.Compact(addrs)
		dst := make([]string, len(addrs))
		for i, a := range addrs {
			dst[i] = netip.PrefixFrom(a, a.BitLen()).String()
		}
		for _, proto := range []string{"tcp", "udp"} {
			rules = append(rules, api.NetworkACLRule{
				Action:          "allow",
				Destination:     strings.Join(dst, ","),
				Protocol:        proto,
				DestinationPort: strconv.Itoa(int(port)),
				Description:     "ephemera: egress_allow port " + strconv.Itoa(int(port)),
				State:           "enabled",
			})
		}
	}
	for _, fam := range []struct {
		name     string
		universe netip.Prefix
	}{
		{"IPv4", netip.MustParsePrefix("0.0.0.0/0")},
		{"IPv6", netip.MustParsePrefix("::/0")},
	} {
		open := subtract(fam.universe, deny)
		if len(open) == 0 {
			continue
		}
		dst := make([]string, len(open))
		for i, p := range open {
			dst[i] = p.String()
		}
		rules = append(rules, api.NetworkACLRule{
			Action:      "allow",
			Destination: strings.Join(dst, ","),
			Description: "ephemera: " + fam.name + " outside egress_deny",
			State:       "enabled",
		})
	}
	denied := make([]string, len(deny))
	for i, p := range deny {
		denied[i] = p.String()
	}
	return api.NetworkACLPut{
		Description: "ephemera: egress of runners on network " + network + " (kept in line by ephemera; edits are overwritten)",
		Config:      map[string]string{keyACLDeny: strings.Join(denied, ",")},
		Egress:      rules,
		Ingress:     []api.NetworkACLRule{},
	}
}

// subtract returns the prefixes that cover u except what deny covers,
// largest first within address order.
func subtract(u netip.Prefix, deny []netip.Prefix) []netip.Prefix {
	for _, d := range deny {
		if !d.Overlaps(u) {
			continue
		}
		if d.Bits() <= u.Bits() {
			return nil // u lies inside d
		}
		lo, hi := halves(u)
		return append(subtract(lo, deny), subtract(hi, deny)...)
	}
	return []netip.Prefix{u}
}

// halves splits p into its two halves.
func halves(p netip.Prefix) (lo, hi netip.Prefix) {
	b := p.Addr().AsSlice()
	bit := p.Bits()
	lo = netip.PrefixFrom(p.Addr(), bit+1)
	b[bit/8] |= 0x80 >> (bit % 8)
	a, _ := netip.AddrFromSlice(b)
	return lo, netip.PrefixFrom(a, bit+1)
}

// aclOutcome says what ensureACL did.
type aclOutcome string

const (
	aclCreated   aclOutcome = "created"
	aclUpdated   aclOutcome = "updated"
	aclUnchanged aclOutcome = "unchanged"
)

// ensureACL makes the ACL name hold exactly want: it creates it when
// missing, replaces its rules and description when they differ, and writes
// nothing when they are equal.
func ensureACL(srv server, name string, want api.NetworkACLPut) (aclOutcome, error) {
	have, etag, err := srv.GetNetworkACL(name)
	if api.StatusErrorCheck(err, http.StatusNotFound) {
		if err := srv.CreateNetworkACL(api.NetworkACLsPost{NetworkACLPost: api.NetworkACLPost{Name: name}, NetworkACLPut: want}); err != nil {
			return "", fmt.Errorf("create network ACL %s: %w", name, err)
		}
		return aclCreated, nil
	}
	if err != nil {
		return "", fmt.Errorf("read network ACL %s: %w", name, err)
	}
	if aclEqual(have.Writable(), want) {
		return aclUnchanged, nil
	}
	if err := srv.UpdateNetworkACL(name, want, etag); err != nil {
		return "", fmt.Errorf("update network ACL %s: %w", name, err)
	}
	return aclUpdated, nil
}

// aclEqual compares two ACLs as LXD stores them: rules in order, empty and
// missing lists alike.
func aclEqual(a, b api.NetworkACLPut) bool {
	return a.Description == b.Description &&
		maps.Equal(a.Config, b.Config) &&
		slices.Equal(a.Egress, b.Egress) &&
		slices.Equal(a.Ingress, b.Ingress)
}

// attachACL puts acl on the runner network (a managed bridge) and makes the network's
// default egress action reject, which the allowlist relies on. Other ACLs
// on the network are kept. It writes only when something changes and
// reports whether it did.
func attachACL(srv server, network, acl string) (bool, error) {
	n, etag, err := runnerNetwork(srv, network)
	if err != nil {
		return false, err
	}
	put := n.Writable()
	cfg := maps.Clone(put.Config)
	if cfg == nil {
		cfg = map[string]string{}
	}
	acls := splitList(cfg[keyNetworkACLs])
	changed := false
	if !slices.Contains(acls, acl) {
		cfg[keyNetworkACLs] = strings.Join(append(acls, acl), ",")
		changed = true
	}
	if cfg[keyNetworkEgressDflt] != "reject" && cfg[keyNetworkEgressDflt] != "drop" {
		cfg[keyNetworkEgressDflt] = "reject"
		changed = true
	}
	if !changed {
		return false, nil
	}
	put.Config = cfg
	if err := srv.UpdateNetwork(network, put, etag); err != nil {
		return false, fmt.Errorf("attach ACL %s to network %s: %w", acl, network, err)
	}
	return true, nil
}

// splitList splits LXD's comma-separated list value.
func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
