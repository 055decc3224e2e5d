package main

import (
	"net"

	"github.com/ephemera-ci/ephemera/internal/config"
)

// embeddedURL is how a client on this machine reaches the embedded server
// that nats.listen exposes: over TLS when it has a certificate, and on
// loopback when it listens on every address.
func embeddedURL(n config.NATS) string {
	host, port, err := net.SplitHostPort(n.Listen)
	if err != nil {
		return "nats://" + n.Listen
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	scheme := "nats://"
	if n.TLS.CertFile != "" {
		scheme = "tls://"
	}
	return scheme + net.JoinHostPort(host, port)
}
