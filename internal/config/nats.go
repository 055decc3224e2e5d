package config

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/nats-io/nkeys"
)

// loadNATSSecrets reads the NATS password and nkey seed, for every role:
// whatever talks to NATS presents them.
func (c *Config) loadNATSSecrets() error {
	var err error
	if c.Secrets.NATSPassword, err = loadSecret("nats.password_file", c.NATS.PasswordFile, EnvNATSPassword); err != nil {
		return err
	}
	c.Secrets.NATSNkeySeed, err = loadSecret("nats.nkey_seed_file", c.NATS.NkeySeedFile, EnvNATSNkeySeed)
	return err
}

// NATSAuthenticates reports whether clients authenticate to NATS: with a
// creds file, a user and password, or an nkey.
func (c *Config) NATSAuthenticates() bool {
	return c.NATS.CredsFile != "" || c.NATS.User != "" || !c.Secrets.NATSNkeySeed.IsZero()
}

// validateNATSSecurity checks client authentication and TLS, and refuses
// an embedded server reachable from other machines without both.
func (c *Config) validateNATSSecurity(role Role) error {
	n := c.NATS
	if err := c.validateNATSAuth(); err != nil {
		return err
	}
	if err := validateNATSTLS(n.TLS); err != nil {
		return err
	}
	if n.URL != "" || role != RoleServe {
		return nil
	}
	// The embedded server.
	if n.CredsFile != "" {
		return keyErr("nats.creds_file", "only for nats.url: the embedded server takes user with password_file, or nkey_seed_file")
	}
	if (n.TLS.CAFile != "" || n.TLS.KeyFile != "") && n.TLS.CertFile == "" {
		return keyErr("nats.tls.cert_file", "required for the embedded server's TLS")
	}
	if n.Listen != "" && listensBeyondLoopback(n.Listen) && (n.TLS.CertFile == "" || !c.NATSAuthenticates()) {
		return keyErr("nats.listen", fmt.Sprintf("%q is reachable from other machines: set nats.tls (cert_file, key_file) and client authentication (user with password_file, or nkey_seed_file), or listen on 127.0.0.1", n.Listen))
	}
	return nil
}

func (c *Config) validateNATSAuth() error {
	n, s := c.NATS, c.Secrets
	userPass := n.User != "" || !s.NATSPassword.IsZero()
	nkey := !s.NATSNkeySeed.IsZero()
	switch {
	case n.CredsFile != "" && (userPass || nkey):
		return keyErr("nats.creds_file", "set one of creds_file, user with password_file, or nkey_seed_file")
	case userPass && nkey:
		return keyErr("nats.nkey_seed_file", "set one of creds_file, user with password_file, or nkey_seed_file")
	case n.User == "" && userPass:
		return keyErr("nats.user", "required with a password")
	case n.User != "" && s.NATSPassword.IsZero():
		return keyErr("nats.password_file", "required with nats.user (or set "+EnvNATSPassword+")")
	case strings.ContainsAny(n.User, " \t\r\n"):
		return keyErr("nats.user", "must not contain white space")
	}
	if nkey {
		kp, err := nkeys.FromSeed([]byte(s.NATSNkeySeed.Reveal()))
		if err != nil {
			return keyErr("nats.nkey_seed_file", "not an nkey seed")
		}
		defer kp.Wipe()
		if pub, err := kp.PublicKey(); err != nil || !strings.HasPrefix(pub, "U") {
			return keyErr("nats.nkey_seed_file", "not a user nkey seed (it must start with SU)")
		}
	}
	return nil
}

// validateNATSTLS checks that the named files exist and hold what they
// should, so that `ephemera config check` catches a bad path.
func validateNATSTLS(t NATSTLS) error {
	switch {
	case t.CertFile != "" && t.KeyFile == "":
		return keyErr("nats.tls.key_file", "required with cert_file")
	case t.KeyFile != "" && t.CertFile == "":
		return keyErr("nats.tls.cert_file", "required with key_file")
	case t.CertFile != "":
		if _, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile); err != nil {
			return keyErr("nats.tls.cert_file", fmt.Sprintf("cannot load the certificate and key: %s", oneLine(unwrapPathError(err).Error())))
		}
	}
	if t.CAFile != "" {
		b, err := os.ReadFile(t.CAFile)
		if err != nil {
			return keyErr("nats.tls.ca_file", fmt.Sprintf("cannot read: %v", unwrapPathError(err)))
		}
		if !x509.NewCertPool().AppendCertsFromPEM(b) {
			return keyErr("nats.tls.ca_file", "holds no PEM certificate")
		}
	}
	return nil
}

// listensBeyondLoopback reports whether a host:port listen address is
// reachable from other machines: an empty host (every address), an
// address that is not a loopback one, or any host name but localhost.
func listensBeyondLoopback(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return true
	}
	if host == "localhost" {
		return false
	}
	ip := net.ParseIP(host)
	return ip == nil || !ip.IsLoopback()
}
