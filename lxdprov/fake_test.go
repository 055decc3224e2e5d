package lxdprov_test

import (
	"testing"

	"github.com/rs/zerolog"

	"github.com/ephemera-ci/ephemera/internal/config"
	"github.com/ephemera-ci/ephemera/lxdprov"
	"github.com/ephemera-ci/ephemera/lxdprov/lxdfake"
)

// Unit tests of lxdprov's own logic run on lxdfake: an image "img", the
// default profile with a root disk, and one pool "small" on them.

const fakeImage = "img"

// rootDisk is the default profile's root disk in the fake.
var rootDisk = map[string]string{"type": "disk", "path": "/", "pool": "default"}

// newFake returns a fake LXD holding what fakePool needs.
func newFake() *lxdfake.Server {
	srv := &lxdfake.Server{}
	srv.AddImage(fakeImage)
	srv.SetProfile(profile("default", map[string]map[string]string{"root": rootDisk}))
	return srv
}

// fakePool is a container pool on the fake's image.
func fakePool() config.Pool {
	return config.Pool{Name: "small", Labels: []string{"self-hosted"}, InstanceType: config.InstanceContainer, Image: fakeImage,
		CPU: 2, Memory: 4 << 30, Disk: 20 << 30, Max: 5, Profiles: []string{"default"}}
}

// fakeConfig is a provider configuration for pools (fakePool when none).
func fakeConfig(pools ...config.Pool) lxdprov.Config {
	if len(pools) == 0 {
		pools = []config.Pool{fakePool()}
	}
	return lxdprov.Config{Pools: pools, PolicyURL: "http://192.0.2.1:8081", PreJobHook: "#!/bin/sh\nexit 0\n", Log: zerolog.Nop()}
}

// onFake returns a provider on srv.
func onFake(t *testing.T, srv *lxdfake.Server, cfg lxdprov.Config) *lxdprov.Provider {
	t.Helper()
	p, err := lxdprov.NewOnServer(t.Context(), cfg, srv)
	if err != nil {
		t.Fatalf("NewOnServer: %v", err)
	}
	return p
}
