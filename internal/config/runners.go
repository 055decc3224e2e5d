package config

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"strconv"
)

// Runners configures what ephemera enforces around its runner instances.
type Runners struct {
	Network RunnerNetwork `yaml:"network"`
}

// RunnerNetwork is the network guard around runners, which run untrusted
// code: the LXD network their NICs attach to, and the egress the network's
// ACL lets through. Empty Name: no guard; the runners' NICs are whatever
// the pools' profiles give them.
type RunnerNetwork struct {
	// Name is the LXD network (a managed bridge) runner NICs attach to;
	// 1-15 characters, as a Linux interface name.
	Name string `yaml:"name"`
	// EgressDeny are the CIDRs runners may not reach. Absent: [DefaultEgressDeny].
	// An explicit empty list denies nothing.
	EgressDeny []string `yaml:"egress_deny"`
	// EgressAllow are host:port pairs (host an IP address or a DNS name,
	// resolved at every reconcile) runners may reach over TCP and UDP even
	// inside EgressDeny. The policy service's address from policy.url is
	// always allowed, without being listed.
	EgressAllow []string `yaml:"egress_allow"`
}

// DefaultEgressDeny returns the ranges runners may not reach unless the
// configuration says otherwise: RFC 1918's private ranges, shared address
// space (RFC 6598, often a provider's internal network), link-local (cloud
// metadata services live at 169.254.169.254), loopback and "this network";
// and for IPv6 unique-local (fc00::/7, the equivalent of RFC 1918),
// link-local, deprecated site-local and ::/8, the reserved block that holds
// loopback, the unspecified address, IPv4-mapped and IPv4-compatible
// addresses and the NAT64 prefixes (each a way back to the host or to an
// IPv4 address).
func DefaultEgressDeny() []string {
	return []string{
		"0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8",
		"169.254.0.0/16", "172.16.0.0/12", "192.168.0.0/16",
		"::/8", "fc00::/7", "fe80::/10", "fec0::/10",
	}
}

// Deny returns EgressDeny parsed. Call it on a validated configuration.
func (n RunnerNetwork) Deny() ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(n.EgressDeny))
	for i, s := range n.EgressDeny {
		p, err := parseCIDR(fmt.Sprintf("runners.network.egress_deny[%d]", i), s)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// HostPort is one address runners may reach: Host is an IP address or a
// DNS name.
type HostPort struct {
	Host string
	Port uint16
}

func (hp HostPort) String() string { return net.JoinHostPort(hp.Host, strconv.Itoa(int(hp.Port))) }

// Allow returns EgressAllow parsed, followed by the policy service's
// address taken from policyURL (its port, or the scheme's). Call it on a
// validated configuration.
func (n RunnerNetwork) Allow(policyURL string) ([]HostPort, error) {
	out := make([]HostPort, 0, len(n.EgressAllow)+1)
	for i, s := range n.EgressAllow {
		hp, err := parseHostPort(fmt.Sprintf("runners.network.egress_allow[%d]", i), s)
		if err != nil {
			return nil, err
		}
		out = append(out, hp)
	}
	hp, err := PolicyHostPort(policyURL)
	if err != nil {
		return nil, err
	}
	return append(out, hp), nil
}

// PolicyHostPort is the host and port runners connect to for the policy
// service at policyURL: its port, or 80 for http and 443 for https.
func PolicyHostPort(policyURL string) (HostPort, error) {
	u, err := url.Parse(policyURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" {
		return HostPort{}, keyErr("policy.url", fmt.Sprintf("must be an http:// or https:// URL, got %q", policyURL))
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	return parseHostPort("policy.url", net.JoinHostPort(u.Hostname(), port))
}

// networkNameRE: an LXD network name is also a Linux interface name.
var networkNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$`)

// hostnameRE: a DNS name, as RFC 1123 allows it.
var hostnameRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$`)

func (c *Config) validateRunners(role Role) error {
	if !role.runsScaler() {
		return nil
	}
	n := c.Runners.Network
	if n.Name == "" {
		if len(n.EgressAllow) > 0 {
			return keyErr("runners.network.name", "required with egress_allow: the LXD network runner NICs attach to")
		}
		return nil
	}
	if !networkNameRE.MatchString(n.Name) {
		return keyErr("runners.network.name", fmt.Sprintf("must be an LXD network name (1-15 characters of letters, digits, _, . and -), got %q", n.Name))
	}
	if _, err := n.Deny(); err != nil {
		return err
	}
	_, err := n.Allow(c.Policy.URL)
	return err
}

// parseCIDR parses s as a network in CIDR notation, refusing one with bits
// set past its prefix (a typo more often than an intent).
func parseCIDR(key, s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, keyErr(key, fmt.Sprintf("must be a CIDR such as 10.0.0.0/8 or fc00::/7, got %q", s))
	}
	if p.Addr().Zone() != "" {
		return netip.Prefix{}, keyErr(key, fmt.Sprintf("must not carry a zone, got %q", s))
	}
	if p.Masked() != p {
		return netip.Prefix{}, keyErr(key, fmt.Sprintf("%q has bits set past its prefix length; did you mean %s?", s, p.Masked()))
	}
	return p, nil
}

// parseHostPort parses s as host:port ([v6]:port for IPv6).
func parseHostPort(key, s string) (HostPort, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return HostPort{}, keyErr(key, fmt.Sprintf("must be host:port ([address]:port for IPv6), got %q", s))
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || n == 0 {
		return HostPort{}, keyErr(key, fmt.Sprintf("port must be 1-65535, got %q", port))
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if a.Zone() != "" {
			return HostPort{}, keyErr(key, fmt.Sprintf("the address must not carry a zone, got %q", host))
		}
		host = a.Unmap().String()
	} else if !hostnameRE.MatchString(host) {
		return HostPort{}, keyErr(key, fmt.Sprintf("host must be an IP address or a DNS name, got %q", host))
	}
	return HostPort{Host: host, Port: uint16(n)}, nil
}
