package lxdprov

import (
	"context"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/ephemera-ci/ephemera/internal/config"
	"github.com/ephemera-ci/ephemera/internal/logkey"
	"github.com/ephemera-ci/ephemera/scaler"
)

// guard is the runner network guard a provider keeps: runners.network.
type guard struct {
	network string
	acl     string
	deny    []netip.Prefix
	allow   []config.HostPort
	// resolve finds a DNS name's addresses.
	resolve func(ctx context.Context, host string) ([]netip.Addr, error)
}

var _ scaler.NetworkGuard = (*Provider)(nil)

// NICFilters are the layer-2 filters set on every runner NIC when a runner
// network is configured: a runner can send only from its own MAC address
// and from the IPv4 and IPv6 addresses LXD gave it, so it cannot answer
// for the policy service's (or another runner's) address, and the bridge
// does not forward between runner NICs at all.
var NICFilters = map[string]string{
	"security.mac_filtering":  "true",
	"security.ipv4_filtering": "true",
	"security.ipv6_filtering": "true",
	"security.port_isolation": "true",
}

// newGuard reads runners.network; nil when no network is named.
func newGuard(n config.RunnerNetwork, policyURL string) (*guard, error) {
	if n.Name == "" {
		return nil, nil
	}
	deny, err := n.Deny()
	if err != nil {
		return nil, err
	}
	allow, err := n.Allow(policyURL)
	if err != nil {
		return nil, err
	}
	return &guard{
		network: n.Name,
		acl:     ACLName(n.Name),
		deny:    deny,
		allow:   allow,
		resolve: func(ctx context.Context, host string) ([]netip.Addr, error) {
			return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		},
	}, nil
}

// EnsureNetworkGuard keeps the runner network guard in line with
// runners.network: the ACL (see acl.go) exists with exactly the rules the
// configuration calls for — names in egress_allow resolved afresh — and is
// attached to the runner network, whose default egress action is reject.
// It writes to LXD only what differs. Without runners.network it does
// nothing. The scaler's leader calls it at start and on every reconcile.
func (p *Provider) EnsureNetworkGuard(ctx context.Context) (err error) {
	g := p.guard
	if g == nil {
		return nil
	}
	start := time.Now()
	defer func() { p.metrics.observe(opGuard, start, err) }()
	allow, err := g.endpoints(ctx)
	if err != nil {
		return fmt.Errorf("network guard: %w", err)
	}
	outcome, err := ensureACL(p.srv, g.acl, egressACL(g.network, g.deny, allow))
	if err != nil {
		return fmt.Errorf("network guard: %w", err)
	}
	if outcome != aclUnchanged {
		p.log.Info().Str(logkey.ACL, g.acl).Str(logkey.Network, g.network).Msgf("runner network ACL %s", outcome)
	}
	attached, err := attachACL(p.srv, g.network, g.acl)
	if err != nil {
		return fmt.Errorf("network guard: %w", err)
	}
	if attached {
		p.log.Info().Str(logkey.ACL, g.acl).Str(logkey.Network, g.network).Msg("runner network ACL attached, default egress action reject")
	}
	return nil
}

// endpoints resolves the allowed host:port pairs.
func (g *guard) endpoints(ctx context.Context) ([]endpoint, error) {
	var out []endpoint
	for _, hp := range g.allow {
		if a, err := netip.ParseAddr(hp.Host); err == nil {
			out = append(out, endpoint{a.Unmap(), hp.Port})
			continue
		}
		addrs, err := g.resolve(ctx, hp.Host)
		if err != nil {
			return nil, fmt.Errorf("resolve %s (runners.network.egress_allow or policy.url): %w", hp.Host, err)
		}
		if len(addrs) == 0 {
			return nil, fmt.Errorf("resolve %s (runners.network.egress_allow or policy.url): no addresses", hp.Host)
		}
		for _, a := range addrs {
			out = append(out, endpoint{a.Unmap(), hp.Port})
		}
	}
	return out, nil
}

// runnerNICs returns the NIC devices a pool's instances get when a runner
// network is configured, given the devices their profiles give them: each
// NIC on the runner network again, with NICFilters added; "eth0" on the
// runner network when the profiles give none. A profile NIC on any other
// network (or bridged by parent rather than network, which the network's
// ACL does not cover) is refused: it would let runners around the guard.
func (g *guard) runnerNICs(profileDevices map[string]map[string]string) (map[string]map[string]string, error) {
	out := map[string]map[string]string{}
	for _, name := range slices.Sorted(maps.Keys(profileDevices)) {
		dev := profileDevices[name]
		if dev["type"] != "nic" {
			continue
		}
		if dev["network"] != g.network {
			return nil, fmt.Errorf("the profiles give NIC %s, which is not on the runner network %s (runners.network.name): give it network=%s or remove it: %w", name, g.network, g.network, scaler.ErrMisconfigured)
		}
		nic := maps.Clone(dev)
		maps.Copy(nic, NICFilters)
		out[name] = nic
	}
	if len(out) == 0 {
		nic := map[string]string{"type": "nic", "network": g.network, "name": "eth0"}
		maps.Copy(nic, NICFilters)
		out["eth0"] = nic
	}
	return out, nil
}
