package lxdprov_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/ephemera-ci/ephemera/lxdprov"
	"github.com/ephemera-ci/ephemera/lxdprov/lxdtest"
)

func TestLoopbackProfileHoldsOneProxyDeviceAndIsRemoved(t *testing.T) {
	c := lxdtest.Client(t)
	name := fmt.Sprintf("t-profile-%06d", rand.IntN(1e6))
	remove, err := lxdprov.LoopbackProfile(t.Context(), lxdtest.Config(t), name, 18123)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = remove() })
	// Created a second time, it is replaced, not duplicated.
	if _, err := lxdprov.LoopbackProfile(t.Context(), lxdtest.Config(t), name, 18124); err != nil {
		t.Fatal(err)
	}
	p, _, err := c.GetProfile(name)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"type": "proxy", "listen": "tcp:127.0.0.1:18124", "connect": "tcp:127.0.0.1:18124", "bind": "instance"}
	if len(p.Devices) != 1 || fmt.Sprint(p.Devices["ephemera-loopback"]) != fmt.Sprint(want) {
		t.Errorf("devices = %v, want one proxy device %v", p.Devices, want)
	}
	if err := remove(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.GetProfile(name); err == nil {
		t.Error("the profile is still there after remove")
	}
}
