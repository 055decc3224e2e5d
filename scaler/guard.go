package scaler

import (
	"context"
)

// NetworkGuard is what a Provisioner may also offer: a guard around the
// runners' network (lxdprov keeps an LXD network ACL and the runner NICs'
// filtering in line with runners.network). The leader calls it at start
// and on every reconcile; a provisioner without one is left alone.
type NetworkGuard interface {
	// EnsureNetworkGuard makes the guard match the configuration, writing
	// only what differs. It is a no-op when no guard is configured.
	EnsureNetworkGuard(ctx context.Context) error
}

// ensureNetworkGuard runs the provisioner's network guard, when it has
// one. A failure is logged and the reconcile goes on: runners already
// guarded stay guarded (the ACL lives on in LXD), and the next reconcile
// tries again.
func (s *Scaler) ensureNetworkGuard(ctx context.Context) {
	g, ok := s.cfg.Provisioner.(NetworkGuard)
	if !ok {
		return
	}
	if err := g.EnsureNetworkGuard(ctx); err != nil && ctx.Err() == nil {
		s.log.Error().Err(err).Msg("runner network guard not in line with runners.network; retrying at the next reconcile")
	}
}
