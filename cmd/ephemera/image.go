package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/ephemera-ci/ephemera/internal/cli"
	"github.com/ephemera-ci/ephemera/internal/config"
	"github.com/ephemera-ci/ephemera/lxdprov"
)

const imageUsage = `Usage:
  ephemera image build --config FILE --base IMAGE --runner-tarball FILE|URL [--runner-sha256 HEX]
                       --alias NAME [--type container|virtual-machine] [--keep N]
  ephemera image list --config FILE --alias NAME
  ephemera image rollback --config FILE --alias NAME [--to FINGERPRINT]

Run 'ephemera image <command> -h' for a command's flags.
`

func image(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, imageUsage)
		return cli.Usagef("usage: ephemera image build|list|rollback")
	}
	switch args[0] {
	case "build":
		return imageBuild(ctx, args[1:], stdout, stderr)
	case "list":
		return imageList(ctx, args[1:], stdout, stderr)
	case "rollback":
		return imageRollback(ctx, args[1:], stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, imageUsage)
		return nil
	default:
		fmt.Fprint(stderr, imageUsage)
		return cli.Usagef("unknown image command %q", args[0])
	}
}

// lxdConnection is the connection part of lxdprov's Config, from the
// configuration's lxd section.
func lxdConnection(c *config.Config) lxdprov.Config {
	return lxdprov.Config{
		Socket: c.LXD.Socket, URL: c.LXD.URL,
		ClientCert: c.LXD.ClientCert, ClientKey: c.LXD.ClientKey, ServerCert: c.LXD.ServerCert,
		Project: c.LXD.Project,
	}
}

func imageBuild(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cf commonFlags
	var ic lxdprov.ImageConfig
	fs := newFlagSet("image build", stderr, &cf, "Builds a runner image in LXD (lxd.* of the configuration: socket or url, project):\n"+
		"launches a builder from --base, installs the runner tarball into /opt/actions-runner\n"+
		"for user runner (uid 1000, passwordless sudo), makes the boot lean, publishes it\n"+
		"with --alias and keeps the newest --keep images of that alias. Progress on stdout.")
	fs.StringVar(&ic.Base, "base", "", "base `image`: a local alias or fingerprint, or remote:alias (ubuntu:noble)")
	fs.StringVar(&ic.Tarball, "runner-tarball", "", "the GitHub Actions runner tarball: a `file` or an http(s) URL")
	fs.StringVar(&ic.TarballSHA256, "runner-sha256", "", "the tarball's SHA-256 (`hex`): required with a URL, checked when given")
	fs.StringVar(&ic.Alias, "alias", "", "the image `alias` to build and move (the pool's image)")
	fs.StringVar(&ic.Type, "type", config.InstanceContainer, "container or virtual-machine")
	fs.IntVar(&ic.Keep, "keep", lxdprov.DefaultKeep, "how many images of the alias to keep, the new one included (older ones in use are kept too)")
	fs.StringVar(&ic.Network, "network", "", "give the builder a NIC on this LXD `network` (default: none; bin/installdependencies.sh then cannot download)")
	fs.StringVar(&ic.Compression, "compression", "none", "publish compression: none, or gzip, zstd, xz … (LXD unpacks the image for every instance on a dir storage pool, so a compressed image slows each runner's start)")
	if err := cli.ParseFlags(fs, args); err != nil {
		return err
	}
	switch {
	case ic.Base == "":
		return cli.Usagef("--base is required")
	case ic.Tarball == "":
		return cli.Usagef("--runner-tarball is required")
	case ic.Alias == "":
		return cli.Usagef("--alias is required")
	case ic.Keep < 1:
		return cli.Usagef("--keep must be at least 1, got %d", ic.Keep)
	case ic.Type != config.InstanceContainer && ic.Type != config.InstanceVM:
		return cli.Usagef("--type must be container or virtual-machine, got %q", ic.Type)
	}
	log, err := cli.NewLogger(cf.log, stderr)
	if err != nil {
		return err
	}
	c, err := loadConfig(cf.config, config.RoleImage)
	if err != nil {
		return err
	}
	ic.LXD = lxdConnection(c)
	ic.Log = log.With().Str("component", "image").Logger()
	ic.Progress = func(ev lxdprov.StepEvent) { printStep(stdout, ev) }
	img, err := lxdprov.BuildImage(ctx, ic)
	if errors.Is(err, lxdprov.ErrBadImageConfig) || errors.Is(err, lxdprov.ErrChecksumRequired) {
		return cli.Usagef("%v", err)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "built %s: image %s, runner %s\n", img.Alias, img.Fingerprint, img.RunnerVersion)
	return nil
}

// printStep prints one line as a step starts and one as it ends.
func printStep(w io.Writer, ev lxdprov.StepEvent) {
	prefix := fmt.Sprintf("[%2d/%d] %s", ev.N, ev.Total, ev.Name)
	switch {
	case !ev.Done:
		fmt.Fprintf(w, "%s ...\n", prefix)
	case ev.Err != nil:
		fmt.Fprintf(w, "%s: FAILED after %.1fs: %v\n", prefix, ev.Elapsed.Seconds(), ev.Err)
	case ev.Detail != "":
		fmt.Fprintf(w, "%s: done in %.1fs: %s\n", prefix, ev.Elapsed.Seconds(), ev.Detail)
	default:
		fmt.Fprintf(w, "%s: done in %.1fs\n", prefix, ev.Elapsed.Seconds())
	}
}

func imageFlags(name, summary string, stderr io.Writer, cf *commonFlags, alias *string) *flag.FlagSet {
	fs := newFlagSet("image "+name, stderr, cf, summary)
	fs.StringVar(alias, "alias", "", "the image `alias` (required)")
	return fs
}

func imageList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cf commonFlags
	var alias string
	fs := imageFlags("list", "Lists the kept images of an alias, newest first; * marks the one the alias names.", stderr, &cf, &alias)
	if err := cli.ParseFlags(fs, args); err != nil {
		return err
	}
	if alias == "" {
		return cli.Usagef("--alias is required")
	}
	c, err := loadConfig(cf.config, config.RoleImage)
	if err != nil {
		return err
	}
	imgs, err := lxdprov.ListImages(ctx, lxdConnection(c), alias)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\tFINGERPRINT\tRUNNER\tBUILT\tBASE")
	for _, img := range imgs {
		mark := ""
		if img.Current {
			mark = "*"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", mark, img.Fingerprint, img.RunnerVersion, img.BuiltAt, img.Base)
	}
	return tw.Flush()
}

func imageRollback(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cf commonFlags
	var alias, to string
	fs := imageFlags("rollback", "Points the alias back at an older kept image (--to, default: the one built\nbefore the image it names now). New runners then start from it; running ones\nare untouched. `ephemera image list` shows the kept images.", stderr, &cf, &alias)
	fs.StringVar(&to, "to", "", "the `fingerprint` (or a unique prefix) of a kept image of the alias")
	if err := cli.ParseFlags(fs, args); err != nil {
		return err
	}
	if alias == "" {
		return cli.Usagef("--alias is required")
	}
	c, err := loadConfig(cf.config, config.RoleImage)
	if err != nil {
		return err
	}
	from, now, err := lxdprov.RollbackImage(ctx, lxdConnection(c), alias, to)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: %s → %s\n", alias, from, now)
	return nil
}
