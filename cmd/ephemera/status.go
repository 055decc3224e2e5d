package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/rs/zerolog"

	"github.com/ephemera-ci/ephemera/internal/bus"
	"github.com/ephemera-ci/ephemera/internal/cli"
	"github.com/ephemera-ci/ephemera/internal/config"
	"github.com/ephemera-ci/ephemera/internal/serve"
	"github.com/ephemera-ci/ephemera/scaler"
)

// status prints every pool's state, read from the shared KV buckets.
func status(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cf commonFlags
	var output, natsURL string
	fs := newFlagSet("status", stderr, &cf, "Shows every pool: min_idle, max, idle, busy, provisioning, waiting jobs, the\noldest waiting job's age and the runner version its image pins (with a warning\nwhen GitHub lists a newer one), read from NATS (nats.url, or --nats for a local\n`ephemera serve` whose embedded server listens on nats.listen).")
	fs.StringVar(&output, "o", "table", "output: table or json")
	fs.StringVar(&natsURL, "nats", "", "NATS `url` to read from (default: nats.url, else the embedded server at nats.listen); nats.tls and the nats credentials apply")
	if err := cli.ParseFlags(fs, args); err != nil {
		return err
	}
	if output != "table" && output != "json" {
		return cli.Usagef("-o must be table or json, got %q", output)
	}
	c, err := loadConfig(cf.config, config.RoleClient)
	if err != nil {
		return err
	}
	url := natsURL
	switch {
	case url != "":
	case c.NATS.URL != "":
		url = c.NATS.URL
	case c.NATS.Listen != "":
		url = embeddedURL(c.NATS)
	default:
		return cli.Usagef("config: nats.url or nats.listen is needed to reach the running ephemera (or pass --nats)")
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	bc := serve.BusConfig(c)
	bc.URL, bc.Name, bc.Log = url, "ephemera-status", zerolog.Nop()
	b, err := bus.Open(ctx, bc)
	if err != nil {
		return fmt.Errorf("reach NATS at %s: %w", url, err)
	}
	defer b.Close()
	st, err := scaler.ReadStatus(ctx, b.JS, c.Pools)
	if err != nil {
		return err
	}
	if output == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "POOL\tMIN_IDLE\tMAX\tIDLE\tBUSY\tPROVISIONING\tINSTANCES\tWAITING\tOLDEST_WAIT\tRUNNER")
	for _, p := range st {
		oldest := "-"
		if p.WaitingJobs > 0 {
			oldest = (time.Duration(p.OldestWaitingSeconds) * time.Second).String()
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%s\n", p.Pool, p.MinIdle, p.Max, p.Idle, p.Busy, p.Provisioning, p.Instances, p.WaitingJobs, oldest, runnerColumn(p))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, p := range st {
		if p.RunnerOutdated {
			fmt.Fprintf(stdout, "warning: pool %s: its image pins runner %s, GitHub lists %s (checked %s); GitHub refuses runners older than its supported minimum: move the pin and rebuild the image\n",
				p.Pool, p.RunnerVersion, p.LatestRunnerVersion, p.VersionCheckedAt.Format(time.RFC3339))
		}
	}
	return nil
}

// runnerColumn is the runner version a pool's image pins, marked when
// GitHub lists a newer one; "-" when unknown.
func runnerColumn(p scaler.PoolStatus) string {
	switch {
	case p.RunnerVersion == "":
		return "-"
	case p.RunnerOutdated:
		return p.RunnerVersion + " (outdated: " + p.LatestRunnerVersion + ")"
	}
	return p.RunnerVersion
}
