package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/ephemera-ci/ephemera/internal/bus"
	"github.com/ephemera-ci/ephemera/internal/cli"
	"github.com/ephemera-ci/ephemera/internal/config"
	"github.com/ephemera-ci/ephemera/internal/ghbudget"
	"github.com/ephemera-ci/ephemera/internal/serve"
	"github.com/ephemera-ci/ephemera/scaler"
)

// status prints every pool's state, read from the shared KV buckets.
func status(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cf commonFlags
	var output, natsURL string
	fs := newFlagSet("status", stderr, &cf, "Shows every pool: min_idle, max, idle, busy, provisioning, waiting jobs, the\noldest waiting job's age and the runner version its image pins (with a warning\nwhen GitHub lists a newer one), then the GitHub request budget of each\ninstallation (points a minute per endpoint, requests in flight, the hourly\nbudget left) and the requests queued behind it by priority, read from NATS\n(nats.url, or --nats for a local `ephemera serve` whose embedded server\nlistens on nats.listen).")
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
	return budgetStatus(ctx, b, c.GitHub.Budget, stdout)
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

// budgetStatus prints the GitHub request budget of each installation —
// points spent per endpoint in the last minute, requests in flight, the
// primary budget left — and the requests queued behind it, by priority.
// Nothing when no process has used a budget yet.
func budgetStatus(ctx context.Context, b *bus.Bus, bc config.GitHubBudget, w io.Writer) error {
	kv, err := b.JS.KeyValue(ctx, ghbudget.Bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("github budget: %w", err)
	}
	snaps, err := ghbudget.Snapshots(ctx, kv, ghbudget.Config{PointsPerMinute: bc.PointsPerMinute, MaxConcurrent: bc.MaxConcurrent})
	if err != nil {
		return err
	}
	waiting, err := ghbudget.WaitingSnapshot(ctx, kv)
	if err != nil {
		return err
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "GITHUB BUDGET\tIN_FLIGHT\tPRIMARY_LEFT\tRESET\tENDPOINT\tPOINTS/MIN")
	for _, s := range snaps {
		primary, reset := "-", "-"
		if s.PrimaryLimit > 0 {
			primary = fmt.Sprintf("%d/%d", s.PrimaryRemaining, s.PrimaryLimit)
			reset = time.Until(s.PrimaryReset).Round(time.Second).String()
		}
		eps := slices.Sorted(maps.Keys(s.Points))
		if len(eps) == 0 {
			eps = []string{""}
		}
		for i, ep := range eps {
			pts := "-"
			if ep != "" {
				pts = fmt.Sprintf("%d/%d", s.Points[ep], s.PointsPerMinute)
			}
			if i == 0 {
				fmt.Fprintf(tw, "installation %s\t%d/%d\t%s\t%s\t%s\t%s\n", s.Installation, s.InFlight, s.MaxConcurrent, primary, reset, ep, pts)
			} else {
				fmt.Fprintf(tw, "\t\t\t\t%s\t%s\n", ep, pts)
			}
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	var queue []string
	for _, p := range ghbudget.Priorities() {
		queue = append(queue, fmt.Sprintf("%s %d", p, waiting[p.String()]))
	}
	_, err = fmt.Fprintf(w, "queued behind the budget: %s\n", strings.Join(queue, ", "))
	return err
}
