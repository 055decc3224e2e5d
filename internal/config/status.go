package config

import (
	"net"
)

// Status configures the live web view, served on the metrics listener
// (metrics.listen) at / by `ephemera serve` and `ephemera scaler`.
type Status struct {
	// TokenFile holds the bearer token the view requires when
	// metrics.listen is not on loopback; EPHEMERA_STATUS_TOKEN overrides
	// it. Without one, a view on a non-loopback listener answers 403.
	TokenFile string `yaml:"token_file"`
}

// OnLoopback reports whether a listen address (host:port) accepts only
// loopback connections: 127.0.0.0/8, ::1 or localhost. An empty host
// (":9090") listens on every interface.
func OnLoopback(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	if err != nil || host == "" {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
