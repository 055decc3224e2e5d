// Package lxdtest sets up tests that run against the real LXD of this
// machine (deploy/lxd/setup.sh, `make lxd-dev`): it connects, skips the test
// with a one-line reason when LXD or the test image is missing — or fails
// it when EPHEMERA_REQUIRE_LXD=1, as CI sets — and hands out providers for
// uniquely named pools whose instances are all deleted when the test ends.
package lxdtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	lxd "github.com/canonical/lxd/client"
	"github.com/canonical/lxd/shared/api"
	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"

	"github.com/ephemera-ci/ephemera/internal/config"
	"github.com/ephemera-ci/ephemera/internal/waitfor"
	"github.com/ephemera-ci/ephemera/lxdprov"
	"github.com/ephemera-ci/ephemera/scaler"
)

// Image is the test image's alias, as deploy/lxd/setup.sh imports it.
const Image = "ephemera-test"

// EnvRequire makes tests fail instead of skipping when LXD is missing.
const EnvRequire = "EPHEMERA_REQUIRE_LXD"

// PolicyURL and PreJobHook are what test providers render into user-data.
const (
	PolicyURL  = "http://127.0.0.1:8081"
	PreJobHook = "#!/bin/sh\n# lxdtest stand-in pre-job hook\nexit 0\n"
)

var (
	connectOnce sync.Once
	client      lxd.InstanceServer // shared: see shared
	socket      string
	connectErr  error
)

// connect connects once per test binary, checking that LXD holds the test
// image.
func connect() error {
	connectOnce.Do(func() {
		socket = os.Getenv("LXD_SOCKET")
		if socket == "" {
			for _, s := range []string{lxdprov.SnapSocket, lxdprov.DebianSocket} {
				if _, err := os.Stat(s); err == nil {
					socket = s
					break
				}
			}
		}
		if socket == "" {
			connectErr = fmt.Errorf("no LXD socket at %s or %s", lxdprov.SnapSocket, lxdprov.DebianSocket)
			return
		}
		c, err := lxd.ConnectLXDUnix(socket, nil)
		if err != nil {
			connectErr = fmt.Errorf("LXD at %s: %w", socket, err)
			return
		}
		if _, _, err := c.GetImageAlias(Image); err != nil {
			connectErr = fmt.Errorf("LXD image %s: %w", Image, err)
			return
		}
		client = c
	})
	return connectErr
}

// Require skips t, with one line saying why, unless this machine's LXD can
// be reached and holds the test image; under EPHEMERA_REQUIRE_LXD=1 it
// fails t instead.
func Require(t testing.TB) {
	t.Helper()
	if err := connect(); err != nil {
		if os.Getenv(EnvRequire) == "1" {
			t.Fatalf("LXD required (%s=1) but unusable: %v (run make lxd-dev)", EnvRequire, err)
		}
		t.Skipf("LXD not available: %v (run make lxd-dev)", err)
	}
}

// Client returns a raw LXD client, for tests that inspect instances the
// way LXD sees them. Only tests may use it. Each call connects anew: LXD's
// client caches the server's description on every GetServer without a
// lock, so one client shared by parallel tests is a data race (one test's
// GetServer against another's CheckExtension, seen under -race in CI).
func Client(t testing.TB) lxd.InstanceServer {
	t.Helper()
	Require(t)
	c, err := lxd.ConnectLXDUnix(socket, nil)
	if err != nil {
		t.Fatalf("LXD at %s: %v", socket, err)
	}
	t.Cleanup(c.Disconnect)
	return c
}

// shared is the client this package's helpers share across parallel
// tests: they never call GetServer on it, the one call that writes the
// client's cached state.
func shared(t testing.TB) lxd.InstanceServer {
	t.Helper()
	Require(t)
	return client
}

// Socket returns the LXD socket the tests use.
func Socket(t testing.TB) string {
	t.Helper()
	Require(t)
	return socket
}

// Pool returns a container pool from the test image with a name no other
// test uses ("t-" and 6 random characters), so its instances are eph-t-…,
// which `make lxd-dev` deletes if a test run leaves any behind.
func Pool() config.Pool {
	return config.Pool{
		Name:         "t-" + randomHex(3),
		Labels:       []string{"self-hosted", "linux", "x64", "test"},
		InstanceType: config.InstanceContainer,
		Image:        Image,
		CPU:          1,
		Memory:       256 << 20,
		Disk:         1 << 30,
		Max:          50,
		Profiles:     []string{"default"},
	}
}

// Config returns a provider configuration for pools on this machine's LXD.
func Config(t testing.TB, pools ...config.Pool) lxdprov.Config {
	t.Helper()
	return lxdprov.Config{
		Socket:     Socket(t),
		Pools:      pools,
		PolicyURL:  PolicyURL,
		PreJobHook: PreJobHook,
		Log:        zerolog.Nop(),
	}
}

// Provider returns a provider for pools (one fresh Pool when none are
// given) that is closed, and whose pools' instances are all deleted, when
// the test ends, whether it passed or not.
func Provider(t testing.TB, pools ...config.Pool) *lxdprov.Provider {
	t.Helper()
	if len(pools) == 0 {
		pools = []config.Pool{Pool()}
	}
	cfg := Config(t, pools...)
	return New(t, cfg)
}

// New returns lxdprov.New(cfg), cleaned up like Provider's.
func New(t testing.TB, cfg lxdprov.Config) *lxdprov.Provider {
	t.Helper()
	Require(t)
	p, err := lxdprov.New(t.Context(), cfg)
	if err != nil {
		t.Fatalf("lxdprov.New: %v", err)
	}
	t.Cleanup(func() {
		DeleteAll(t, p)
		_ = p.Close()
	})
	return p
}

// DeleteAll deletes every instance p lists and its pools' templates, and
// fails t when one remains.
func DeleteAll(t testing.TB, p *lxdprov.Provider) {
	t.Helper()
	// t.Context() has ended by the time cleanups run.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	insts, err := p.List(ctx)
	if err != nil {
		t.Errorf("cleanup: list: %v", err)
		return
	}
	var g errgroup.Group
	g.SetLimit(8)
	for _, inst := range insts {
		g.Go(func() error { return p.Delete(ctx, inst.Name) })
	}
	if err := g.Wait(); err != nil {
		t.Errorf("cleanup: %v", err)
	}
	if err := p.DeleteTemplates(ctx); err != nil {
		t.Errorf("cleanup: %v", err)
	}
}

var seq atomic.Int64

// Name returns a fresh instance name in pool: eph-<pool>-<n><random>.
func Name(pool string) string {
	return fmt.Sprintf("eph-%s-%d%s", pool, seq.Add(1), randomHex(2))
}

// Spec returns a valid spec for a fresh instance in pool, with a random
// JIT config and policy token.
func Spec(pool string) scaler.InstanceSpec {
	return scaler.InstanceSpec{
		Name:        Name(pool),
		Pool:        pool,
		JITConfig:   "eyJqaXQiOiJ0ZXN0In0" + randomHex(8) + "+/==",
		PolicyToken: randomHex(32),
	}
}

// Instance returns the instance as LXD sees it, or nil when it does not
// exist.
func Instance(t testing.TB, name string) *api.Instance {
	t.Helper()
	inst, _, err := shared(t).GetInstance(name)
	if api.StatusErrorCheck(err, http.StatusNotFound) {
		return nil
	}
	if err != nil {
		t.Fatalf("get instance %s: %v", name, err)
	}
	return inst
}

// WaitGone polls until the instance no longer exists, failing t after
// timeout.
func WaitGone(t testing.TB, name string, timeout time.Duration) {
	t.Helper()
	waitfor.True(t, timeout, "instance "+name+" to be gone", func() bool { return Instance(t, name) == nil })
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// ForceDelete deletes the instance through the raw client, whatever the
// provider's state; an instance already gone is fine. For cleanups of
// tests that close their provider.
func ForceDelete(t testing.TB, name string) {
	t.Helper()
	forceDelete(shared(t), name)
	if Instance(t, name) != nil {
		t.Errorf("cleanup: instance %s still exists", name)
	}
}
