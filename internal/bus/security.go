package bus

import (
	"errors"
	"fmt"
	"net"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// Auth is how clients authenticate to NATS: at most one of CredsFile,
// User with Password, or NkeySeed. The connection presents it; the
// embedded server requires it from every client, the in-process
// connection included.
type Auth struct {
	// CredsFile is a NATS credentials file (user JWT and nkey seed). An
	// external server only: the embedded one has no operator to trust.
	CredsFile string
	User      string
	Password  string
	// NkeySeed is a user nkey seed ("SU…"): the connection signs the
	// server's nonce with it; the embedded server accepts its public key.
	NkeySeed string
}

// IsZero reports whether no credentials are set.
func (a Auth) IsZero() bool { return a == Auth{} }

// TLS names PEM files. For a connection to an external server: verify it
// against CAFile (the system roots when empty) and present CertFile and
// KeyFile when set. For the embedded server's listener: serve CertFile and
// KeyFile, and with CAFile require client certificates signed by it.
type TLS struct {
	CAFile   string
	CertFile string
	KeyFile  string
}

// IsZero reports whether no TLS file is set.
func (t TLS) IsZero() bool { return t == TLS{} }

// ErrExposedWithoutTLSAndAuth is returned by Open for an embedded server
// that would listen on an address other machines reach (an empty host
// included) without both TLS and client authentication: whoever reached it
// could rewrite the policy, plant tokens and publish jobs.
var ErrExposedWithoutTLSAndAuth = errors.New("embedded nats: listening beyond loopback requires TLS and client authentication")

// ErrCredsFileEmbedded is returned by Open for a creds file with the
// embedded server, which has no operator to trust the JWT's issuer.
var ErrCredsFileEmbedded = errors.New("embedded nats: a creds file needs an external server; use user and password or an nkey")

// clientOptions are the connection's credentials and, for an external
// server, its TLS.
func (cfg Config) clientOptions(external bool) ([]nats.Option, error) {
	var opts []nats.Option
	a := cfg.Auth
	switch {
	case a.CredsFile != "":
		opts = append(opts, nats.UserCredentials(a.CredsFile))
	case a.User != "":
		opts = append(opts, nats.UserInfo(a.User, a.Password))
	case a.NkeySeed != "":
		kp, err := nkeys.FromSeed([]byte(a.NkeySeed))
		if err != nil {
			return nil, fmt.Errorf("nats nkey seed: %w", err)
		}
		pub, err := kp.PublicKey()
		if err != nil {
			return nil, fmt.Errorf("nats nkey seed: %w", err)
		}
		opts = append(opts, nats.Nkey(pub, kp.Sign))
	}
	if !external { // in-process: no TLS to speak
		return opts, nil
	}
	if cfg.TLS.CAFile != "" {
		opts = append(opts, nats.RootCAs(cfg.TLS.CAFile))
	}
	if cfg.TLS.CertFile != "" {
		opts = append(opts, nats.ClientCert(cfg.TLS.CertFile, cfg.TLS.KeyFile))
	}
	return opts, nil
}

// secureServer sets the embedded server's TLS and client authentication,
// and refuses a listener beyond loopback without both.
func secureServer(opts *server.Options, cfg Config) error {
	a := cfg.Auth
	switch {
	case a.CredsFile != "":
		return ErrCredsFileEmbedded
	case a.User != "":
		opts.Users = []*server.User{{Username: a.User, Password: a.Password}}
	case a.NkeySeed != "":
		kp, err := nkeys.FromSeed([]byte(a.NkeySeed))
		if err != nil {
			return fmt.Errorf("embedded nats: nkey seed: %w", err)
		}
		pub, err := kp.PublicKey()
		kp.Wipe()
		if err != nil {
			return fmt.Errorf("embedded nats: nkey seed: %w", err)
		}
		opts.Nkeys = []*server.NkeyUser{{Nkey: pub}}
	}
	if cfg.TLS.CertFile != "" {
		tc, err := server.GenTLSConfig(&server.TLSConfigOpts{
			CertFile: cfg.TLS.CertFile,
			KeyFile:  cfg.TLS.KeyFile,
			CaFile:   cfg.TLS.CAFile,
			Verify:   cfg.TLS.CAFile != "",
		})
		if err != nil {
			return fmt.Errorf("embedded nats: tls: %w", err)
		}
		opts.TLSConfig = tc
		opts.TLS = true
		opts.TLSVerify = cfg.TLS.CAFile != ""
		opts.TLSTimeout = 5 // seconds: a loaded machine still completes the handshake
	} else if !cfg.TLS.IsZero() {
		return errors.New("embedded nats: tls needs a certificate and key")
	}
	if opts.DontListen {
		return nil
	}
	// Only a loopback address or localhost keeps other machines out; an
	// unspecified address (every one) or another host name does not.
	ip := net.ParseIP(opts.Host)
	loopback := opts.Host == "localhost" || ip != nil && ip.IsLoopback()
	if !loopback && (opts.TLSConfig == nil || a.IsZero()) {
		return fmt.Errorf("%w (listen %s)", ErrExposedWithoutTLSAndAuth, cfg.Listen)
	}
	return nil
}
