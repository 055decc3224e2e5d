package lxdprov_test

import (
	"testing"

	"github.com/ephemera-ci/ephemera/internal/config"
	"github.com/ephemera-ci/ephemera/lxdprov"
)

// A pool whose every create copies a whole disk on dir is warned of: a
// virtual machine's, or a template's copy.
func TestAFullCopyPerInstanceOnDirIsWarnedOf(t *testing.T) {
	for _, tc := range []struct {
		typ, driver string
		template    bool
		warn        bool
	}{
		{config.InstanceVM, lxdprov.DriverDir, false, true},
		{config.InstanceVM, lxdprov.DriverBtrfs, false, false},
		{config.InstanceVM, "zfs", false, false},
		{config.InstanceContainer, lxdprov.DriverDir, false, false},
		{config.InstanceContainer, lxdprov.DriverDir, true, true},
		{config.InstanceContainer, lxdprov.DriverBtrfs, true, false},
	} {
		s := lxdprov.PoolStorage{Pool: "p", InstanceType: tc.typ, StoragePool: "sp", Driver: tc.driver, Template: tc.template}
		if got := s.Warning() != ""; got != tc.warn {
			t.Errorf("%s on %s, template %t: warned %t, want %t (%q)", tc.typ, tc.driver, tc.template, got, tc.warn, s.Warning())
		}
	}
}
