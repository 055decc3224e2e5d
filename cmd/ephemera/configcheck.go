package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/rs/zerolog"

	"github.com/ephemera-ci/ephemera/internal/cli"
	"github.com/ephemera-ci/ephemera/internal/config"
	"github.com/ephemera-ci/ephemera/lxdprov"
	"github.com/ephemera-ci/ephemera/policy"
)

func configCheck(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cf commonFlags
	var role string
	var offline bool
	fs := newFlagSet("config check", stderr, &cf, "Validates the configuration for a role (and reads its secrets) and exits. For the roles that run the scaler it also asks LXD about the pools (images, profiles, storage) and prints what it finds as warnings.")
	fs.StringVar(&role, "role", string(config.RoleServe), "the command it is for: serve, webhook, scaler or policy")
	fs.BoolVar(&offline, "offline", false, "do not ask LXD about the pools")
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
	if !offline && (r == config.RoleServe || r == config.RoleScaler) {
		for _, w := range lxdWarnings(ctx, c) {
			fmt.Fprintf(stderr, "warning: %s\n", w)
		}
	}
	return nil
}

// lxdWarnings asks LXD what the scaler would find: a pool whose image or
// profiles are missing, a virtual-machine pool on a dir storage pool. LXD
// out of reach is a warning too: the file itself is valid.
func lxdWarnings(ctx context.Context, c *config.Config) []string {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	prov, err := lxdprov.New(ctx, lxdprov.Config{
		Socket:     c.LXD.Socket,
		URL:        c.LXD.URL,
		ClientCert: c.LXD.ClientCert,
		ClientKey:  c.LXD.ClientKey,
		ServerCert: c.LXD.ServerCert,
		Project:    c.LXD.Project,
		Pools:      c.Pools,
		PolicyURL:  c.Policy.URL,
		PreJobHook: policy.HookScript,
		Log:        zerolog.Nop(),
	})
	if err != nil {
		return []string{fmt.Sprintf("LXD not checked: %v", err)}
	}
	defer prov.Close()
	storage, err := prov.Storage(ctx)
	if err != nil {
		return []string{fmt.Sprintf("LXD storage not checked: %v", err)}
	}
	var out []string
	for _, s := range storage {
		if w := s.Warning(); w != "" {
			out = append(out, w)
		}
	}
	return out
}
