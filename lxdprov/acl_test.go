package lxdprov_test

import (
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/ephemera-ci/ephemera/internal/config"
	"github.com/ephemera-ci/ephemera/lxdprov"
)

// The allow rules cover exactly what egress_deny leaves open: every
// address is allowed (to a port nobody listed) if and only if no denied
// prefix holds it. Probed at both ends of every denied prefix, just
// outside them, and at random.
func TestTheACLAllowsExactlyWhatIsNotDenied(t *testing.T) {
	for _, tc := range []struct {
		name string
		deny []string
	}{
		{"the default deny list", config.DefaultEgressDeny()},
		{"overlapping and nested prefixes", []string{"198.51.100.0/24", "198.51.100.128/25", "203.0.113.7/32", "2001:db8::/32", "2001:db8:1::/48"}},
		{"everything denied", []string{"0.0.0.0/0", "::/0"}},
		{"nothing denied", []string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			deny, err := config.RunnerNetwork{EgressDeny: tc.deny}.Deny()
			if err != nil {
				t.Fatal(err)
			}
			rules := lxdprov.EgressACL("ephbr0", deny, nil).Egress
			denied := func(a netip.Addr) bool {
				for _, p := range deny {
					if p.Contains(a) {
						return true
					}
				}
				return false
			}
			var probes []netip.Addr
			for _, p := range deny {
				first := p.Addr()
				last := lastAddr(p)
				probes = append(probes, first, last, first.Prev(), last.Next())
			}
			r := rand.New(rand.NewPCG(1, 2))
			for range 2000 {
				var b4 [4]byte
				var b16 [16]byte
				for i := range b4 {
					b4[i] = byte(r.UintN(256))
				}
				for i := range b16 {
					b16[i] = byte(r.UintN(256))
				}
				probes = append(probes, netip.AddrFrom4(b4), netip.AddrFrom16(b16))
			}
			for _, a := range probes {
				if !a.IsValid() {
					continue
				}
				want := "allow"
				if denied(a) {
					want = "reject"
				}
				if got := verdict(t, rules, a, "tcp", 4242); got != want {
					t.Errorf("%s: LXD would %s, want %s", a, got, want)
				}
			}
		})
	}
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}
