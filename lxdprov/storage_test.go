package lxdprov_test

import (
	"testing"

	"github.com/ephemera-ci/ephemera/internal/config"
	"github.com/ephemera-ci/ephemera/lxdprov"
)

func TestOnlyAVirtualMachinePoolOnDirIsWarnedOf(t *testing.T) {
	for _, tc := range []struct {
		typ, driver string
		warn        bool
	}{
		{config.InstanceVM, lxdprov.DriverDir, true},
		{config.InstanceVM, lxdprov.DriverBtrfs, false},
		{config.InstanceVM, "zfs", false},
		{config.InstanceContainer, lxdprov.DriverDir, false},
	} {
		s := lxdprov.PoolStorage{Pool: "p", InstanceType: tc.typ, StoragePool: "sp", Driver: tc.driver}
		if got := s.Warning() != ""; got != tc.warn {
			t.Errorf("%s on %s: warned %t, want %t (%q)", tc.typ, tc.driver, got, tc.warn, s.Warning())
		}
	}
}
