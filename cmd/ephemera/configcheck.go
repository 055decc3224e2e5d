package main

import (
	"fmt"
	"io"

	"github.com/ephemera-ci/ephemera/internal/cli"
	"github.com/ephemera-ci/ephemera/internal/config"
)

func configCheck(args []string, stdout, stderr io.Writer) error {
	var cf commonFlags
	var role string
	fs := newFlagSet("config check", stderr, &cf, "Validates the configuration for a role (and reads its secrets) and exits.")
	fs.StringVar(&role, "role", string(config.RoleServe), "the command it is for: serve, webhook, scaler or policy")
	if err := cli.ParseFlags(fs, args); err != nil {
		return err
	}
	r := config.Role(role)
	switch r {
	case config.RoleServe, config.RoleWebhook, config.RoleScaler, config.RolePolicy:
	default:
		return cli.Usagef("--role must be serve, webhook, scaler or policy, got %q", role)
	}
	c, err := loadConfig(cf.config, r)
	if err != nil {
		return err
	}
	// Summarise without printing any secret: only counts and sources.
	fmt.Fprintf(stdout, "%s: valid for `ephemera %s`: %d pool(s), %d webhook secret(s)\n", cf.config, r, len(c.Pools), len(c.Secrets.WebhookSecrets))
	return nil
}
