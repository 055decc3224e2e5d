package serve

import (
	"github.com/ephemera-ci/ephemera/internal/bus"
	"github.com/ephemera-ci/ephemera/internal/config"
)

// BusConfig is where NATS is and how to reach it safely: its TLS and the
// credentials every connection presents (and the embedded server
// requires). Name and Log are left to the caller.
func BusConfig(c *config.Config) bus.Config {
	n := c.NATS
	return bus.Config{
		URL: n.URL,
		Auth: bus.Auth{
			CredsFile: n.CredsFile,
			User:      n.User,
			Password:  c.Secrets.NATSPassword.Reveal(),
			NkeySeed:  c.Secrets.NATSNkeySeed.Reveal(),
		},
		TLS:             bus.TLS{CAFile: n.TLS.CAFile, CertFile: n.TLS.CertFile, KeyFile: n.TLS.KeyFile},
		StoreDir:        n.StoreDir,
		Listen:          n.Listen,
		DuplicateWindow: n.DuplicateWindow.D(),
		Replicas:        n.Replicas,
	}
}
