package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/ephemera-ci/ephemera/internal/config"
)

// Exit statuses.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// usageError is bad usage or configuration: exit status 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{msg: fmt.Sprintf(format, args...)} }

const usage = `ephemera autoscales GitHub Actions self-hosted runners on LXD.

Usage:
  ephemera <command> [flags]

Commands:
  serve          run every component in one process (NATS embedded unless nats.url is set)
  webhook        run the webhook receiver alone (needs nats.url)
  scaler         run the scaler and reconciler alone (needs nats.url)
  policy         run the policy service alone (needs nats.url)
  status         show pools and runners (-o json for JSON)
  demo           the whole system on this machine with the GitHub stand-in and real LXD
  config check   validate a configuration file and exit
  version        print the version

Run 'ephemera <command> -h' for a command's flags.
`

// run is main without the process: it returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	err := dispatch(ctx, args, stdout, stderr)
	var ue *usageError
	var ke *config.KeyError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.As(err, &ue):
		fmt.Fprintln(stderr, "ephemera: "+ue.msg)
		return exitUsage
	case errors.As(err, &ke):
		fmt.Fprintln(stderr, "ephemera: config: "+ke.Error())
		return exitUsage
	default:
		fmt.Fprintln(stderr, "ephemera: "+oneLine(err.Error()))
		return exitFailure
	}
}

func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return usagef("a command is required")
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "serve":
		return runRole(ctx, config.RoleServe, rest, stderr)
	case "scaler":
		return runRole(ctx, config.RoleScaler, rest, stderr)
	case "demo":
		return runDemo(ctx, rest, stdout, stderr)
	case "status":
		return status(ctx, rest, stdout, stderr)
	case "policy":
		return runRole(ctx, config.RolePolicy, rest, stderr)
	case "webhook":
		return runRole(ctx, config.RoleWebhook, rest, stderr)
	case "config":
		if len(rest) == 0 || rest[0] != "check" {
			return usagef("usage: ephemera config check --config FILE")
		}
		return configCheck(rest[1:], stdout, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, "ephemera "+version)
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return usagef("unknown command %q", cmd)
	}
}

// commonFlags are the flags of every command that reads a configuration.
type commonFlags struct {
	config    string
	logLevel  string
	logFormat string
}

func newFlagSet(name string, stderr io.Writer, cf *commonFlags, summary string) *flag.FlagSet {
	fs := flag.NewFlagSet("ephemera "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cf.config, "config", "/etc/ephemera/config.yaml", "configuration `file`")
	fs.StringVar(&cf.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&cf.logFormat, "log-format", "json", "log format: json or console")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: ephemera %s [flags]\n\n%s\n\nFlags:\n", name, summary)
		fs.PrintDefaults()
	}
	return fs
}

func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usagef("%v", err)
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	return nil
}

// loadConfig loads and validates the configuration; any problem with it,
// an unreadable file included, is a usage error (exit status 2).
func loadConfig(path string, role config.Role) (*config.Config, error) {
	c, err := config.Load(path, role)
	var ke *config.KeyError
	if err != nil && !errors.As(err, &ke) {
		return nil, usagef("config: %v", err)
	}
	return c, err
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
