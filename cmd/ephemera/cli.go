package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/ephemera-ci/ephemera/internal/cli"
	"github.com/ephemera-ci/ephemera/internal/config"
)

const usage = `ephemera autoscales GitHub Actions self-hosted runners on LXD.

Usage:
  ephemera <command> [flags]

Commands:
  serve          run every component in one process (NATS embedded unless nats.url is set)
  webhook        run the webhook receiver alone (needs nats.url)
  scaler         run the scaler and reconciler alone (needs nats.url)
  policy         run the policy service alone (needs nats.url)
  status         show pools and runners (-o json for JSON)
  config check   validate a configuration file and exit
  image          build a runner image in LXD (image build|list|rollback)
  version        print the version

Run 'ephemera <command> -h' for a command's flags.
`

// run is main without the process: it returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return cli.ExitStatus("ephemera", dispatch(ctx, args, stdout, stderr), stderr)
}

func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return cli.Usagef("a command is required")
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "serve":
		return runRole(ctx, config.RoleServe, rest, stderr)
	case "scaler":
		return runRole(ctx, config.RoleScaler, rest, stderr)
	case "status":
		return status(ctx, rest, stdout, stderr)
	case "policy":
		return runRole(ctx, config.RolePolicy, rest, stderr)
	case "webhook":
		return runRole(ctx, config.RoleWebhook, rest, stderr)
	case "config":
		if len(rest) == 0 || rest[0] != "check" {
			return cli.Usagef("usage: ephemera config check --config FILE")
		}
		return configCheck(ctx, rest[1:], stdout, stderr)
	case "image":
		return image(ctx, rest, stdout, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, "ephemera "+version)
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return cli.Usagef("unknown command %q", cmd)
	}
}

// commonFlags are the flags of every command that reads a configuration.
type commonFlags struct {
	config string
	log    cli.LogFlags
}

func newFlagSet(name string, stderr io.Writer, cf *commonFlags, summary string) *flag.FlagSet {
	fs := flag.NewFlagSet("ephemera "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cf.config, "config", "/etc/ephemera/config.yaml", "configuration `file`")
	cf.log.Register(fs)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: ephemera %s [flags]\n\n%s\n\nFlags:\n", name, summary)
		fs.PrintDefaults()
	}
	return fs
}

// loadConfig loads and validates the configuration; any problem with it,
// an unreadable file included, is a usage error (exit status 2).
func loadConfig(path string, role config.Role) (*config.Config, error) {
	c, err := config.Load(path, role)
	var ke *config.KeyError
	if err != nil && !errors.As(err, &ke) {
		return nil, cli.Usagef("config: %v", err)
	}
	return c, err
}
