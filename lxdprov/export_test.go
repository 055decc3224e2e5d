package lxdprov

import (
	"context"
	"net/netip"

	"github.com/canonical/lxd/shared/api"
)

// Hooks for the external tests (package lxdprov_test).

// NewOnServer is New on srv — an lxdfake.Server, or a wrapped real client —
// instead of a connection of its own. Every pool's target is srv too.
func NewOnServer(ctx context.Context, cfg Config, srv server) (*Provider, error) {
	if err := checkConfig(&cfg); err != nil {
		return nil, err
	}
	return newProvider(ctx, cfg, "test server", srv, func(string) server { return srv }, srv.HasExtension("instance_create_start"))
}

// EgressACL is the ACL a guard with these settings keeps.
func EgressACL(network string, deny []netip.Prefix, allow []netip.AddrPort) api.NetworkACLPut {
	eps := make([]endpoint, len(allow))
	for i, a := range allow {
		eps[i] = endpoint{a.Addr(), a.Port()}
	}
	return egressACL(network, deny, eps)
}

// EnsureACL is ensureACL: it reports "created", "updated" or "unchanged".
func EnsureACL(srv server, name string, want api.NetworkACLPut) (string, error) {
	o, err := ensureACL(srv, name, want)
	return string(o), err
}

// SetResolver replaces how the guard resolves egress_allow names.
func (p *Provider) SetResolver(f func(ctx context.Context, host string) ([]netip.Addr, error)) {
	p.guard.resolve = f
}
