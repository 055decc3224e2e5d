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

// ReadTarball runs an image build's first step alone: it returns the
// step's report and the local path of the tarball, and removes a
// downloaded one when the test ends.
func ReadTarball(t interface{ Cleanup(func()) }, ctx context.Context, src, sha string) (string, string, error) {
	b := &builder{cfg: ImageConfig{Tarball: src, TarballSHA256: sha}}
	t.Cleanup(b.cleanup)
	detail, err := b.readTarball(ctx)
	return detail, b.tarball, err
}

// CheckImageConfig is checkImageConfig.
func CheckImageConfig(cfg *ImageConfig) error { return checkImageConfig(cfg) }

// PruneSet is pruneSet.
func PruneSet(family []api.Image, keep int, current string, inUse map[string]bool) (del, kept []string) {
	return pruneSet(family, keep, current, inUse)
}

// RemoteSource is the instance source of a remote:alias base.
func RemoteSource(base string) (api.InstanceSource, error) {
	return baseSource(nil, base, api.InstanceTypeContainer)
}

// LeanCloudConfig is the cloud.cfg.d file a runner image gets.
var LeanCloudConfig = leanCloudConfig

// Prune runs an image build's last step alone on srv (a project's
// client): alias's family pruned to keep, current never deleted.
func Prune(ctx context.Context, srv, all imageServer, alias string, keep int, current string) (string, []string, error) {
	b := &builder{srv: srv, all: all, cfg: ImageConfig{Alias: alias, Keep: keep}, fingerprint: current, aliased: true}
	detail, err := b.prune(ctx)
	return detail, b.pruned, err
}

// BuilderPost is the request that creates the builder of cfg on srv,
// whose default profile's NICs it masks.
func BuilderPost(srv interface {
	GetProfile(name string) (*api.Profile, string, error)
}, cfg ImageConfig) (api.InstancesPost, error) {
	if err := checkImageConfig(&cfg); err != nil {
		return api.InstancesPost{}, err
	}
	b := &builder{profiles: srv, cfg: cfg, name: "ephemera-build-test"}
	return b.launchPost()
}
