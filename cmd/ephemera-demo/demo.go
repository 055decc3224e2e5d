package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/rs/zerolog"

	"github.com/ephemera-ci/ephemera/internal/cli"
	"github.com/ephemera-ci/ephemera/internal/config"
	"github.com/ephemera-ci/ephemera/internal/demo"
)

const summary = `Runs ephemera end to end on this machine with the GitHub stand-in and real LXD
containers (image from ` + "`make standin-image`; `make demo`" + ` does it all), submits
jobs, shows runners come and go, and prints a summary.`

// run is main without the process: it returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return cli.ExitStatus("ephemera-demo", runDemo(ctx, args, stdout, stderr), stderr)
}

// runDemo runs the whole system on this machine — embedded NATS, the GitHub
// stand-in, webhook, scaler, policy and real LXD containers running the
// stand-in runner — submits a stream of jobs, shows it live, and prints a
// summary.
func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var lf cli.LogFlags
	var (
		pl        = demo.Plan{}
		pools     int
		minIdle   int
		max       int
		image     string
		plain     bool
		logFile   string
		interval  time.Duration
		memory    config.Size
		bootstrap time.Duration
	)
	fs := flag.NewFlagSet("ephemera-demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: ephemera-demo [flags]\n\n%s\n\nFlags:\n", summary)
		fs.PrintDefaults()
	}
	lf.Register(fs)
	fs.IntVar(&pl.Jobs, "jobs", 30, "jobs to submit")
	fs.Float64Var(&pl.Rate, "rate", 2, "jobs submitted per second")
	fs.DurationVar(&pl.Duration, "job-duration", 3*time.Second, "how long each job runs")
	fs.IntVar(&pl.RejectEvery, "reject-every", 5, "every n-th job comes from a repository the policy refuses (0: none)")
	fs.DurationVar(&pl.Timeout, "timeout", 10*time.Minute, "give up after this long")
	fs.IntVar(&pools, "pools", 2, "number of pools (1 to 4)")
	fs.IntVar(&minIdle, "min-idle", 1, "idle runners kept per pool")
	fs.IntVar(&max, "max", 5, "most runners per pool")
	fs.StringVar(&image, "image", "ephemera-standin", "LXD image with the stand-in runner: the busybox `NAME` ephemera-standin (make standin-image), or a runner image built by `ephemera image build` from the stand-in tarball (real systemd, cloud-init and pre-job hook; see the README)")
	fs.TextVar(&memory, "memory", config.Size(512<<20), "limits.memory of each runner container")
	fs.DurationVar(&bootstrap, "bootstrap-timeout", 3*time.Minute, "delete a runner that is not online this long after its creation")
	fs.DurationVar(&interval, "reconcile", 2*time.Second, "reconcile interval")
	fs.BoolVar(&plain, "plain", false, "print a line per second instead of redrawing the screen")
	fs.StringVar(&logFile, "log", "", "write ephemera's logs to this `file` (default: discarded)")
	if err := cli.ParseFlags(fs, args); err != nil {
		return err
	}
	switch {
	case pl.Jobs < 1:
		return cli.Usagef("--jobs must be at least 1")
	case pl.Rate <= 0:
		return cli.Usagef("--rate must be above zero")
	case pools < 1 || pools > 4:
		return cli.Usagef("--pools must be 1 to 4")
	case max < 1 || minIdle < 0 || minIdle > max:
		return cli.Usagef("--min-idle must be 0 to --max, and --max at least 1")
	case pl.RejectEvery < 0:
		return cli.Usagef("--reject-every must not be negative")
	case memory < 64<<20:
		return cli.Usagef("--memory must be at least 64MiB")
	case bootstrap < 10*time.Second:
		return cli.Usagef("--bootstrap-timeout must be at least 10s")
	}
	log := zerolog.Nop()
	if logFile != "" {
		f, err := os.Create(logFile)
		if err != nil {
			return cli.Usagef("--log: %v", err)
		}
		defer f.Close()
		l, err := cli.NewLogger(lf, f)
		if err != nil {
			return err
		}
		log = l
	}
	names := []string{"small", "large", "arm", "gpu"}[:pools]
	fmt.Fprintf(stdout, "ephemera demo: starting NATS, the GitHub stand-in, webhook, scaler and policy; pools %s on LXD image %s\n", strings.Join(names, ", "), image)
	sys, err := demo.Start(ctx, demo.Spec{
		Pools: names, MinIdle: minIdle, Max: max, Image: image, Memory: int64(memory),
		Interval: interval, BootstrapTimeout: bootstrap, IdleGrace: 10 * time.Second, Log: log,
	})
	if err != nil {
		return fmt.Errorf("start the demo: %w (is LXD set up? run `make lxd-dev standin-image`)", err)
	}
	defer sys.Close()
	fmt.Fprintf(stdout, "ephemera demo: live status view at %s\n", sys.StatusURL())

	tty := !plain && cli.IsTerminal(stdout)
	last := time.Time{}
	view := func(s demo.Snapshot) {
		if !tty && s.At.Sub(last) < time.Second {
			return
		}
		last = s.At
		renderView(stdout, s, pl.Jobs, tty)
	}
	res, err := sys.Run(ctx, pl, 250*time.Millisecond, view)
	if err != nil {
		return err
	}
	if err := sys.Stop(); err != nil {
		return fmt.Errorf("stop: %w", err)
	}
	printSummary(stdout, res)
	if len(res.Unexpected) > 0 || res.InstancesLeft+res.RegistrationsLeft+res.SlotsLeft+res.OpenClaims > 0 {
		return fmt.Errorf("the demo found problems: %d unexpected outcomes, %d instances, %d registrations, %d slots, %d open claims left",
			len(res.Unexpected), res.InstancesLeft, res.RegistrationsLeft, res.SlotsLeft, res.OpenClaims)
	}
	return nil
}

func renderView(w io.Writer, s demo.Snapshot, total int, tty bool) {
	if !tty {
		var parts []string
		for _, p := range s.Pools {
			parts = append(parts, fmt.Sprintf("%s idle %d busy %d prov %d wait %d", p.Pool, p.Idle, p.Busy, p.Provisioning, p.WaitingJobs))
		}
		fmt.Fprintf(w, "%s  submitted %d/%d  done %d  rejected %d  running %d  queued %d  instances %d  |  %s\n",
			s.At.Format(time.TimeOnly), s.Submitted, total, s.Done, s.Rejected, s.Running, s.Queued, s.Instances, strings.Join(parts, "  |  "))
		return
	}
	var b strings.Builder
	b.WriteString("\x1b[H\x1b[2J")
	fmt.Fprintf(&b, "ephemera demo — %s   jobs submitted %d/%d   done %d   rejected by policy %d   running %d   queued %d   LXD instances %d\n\n",
		s.At.Format(time.TimeOnly), s.Submitted, total, s.Done, s.Rejected, s.Running, s.Queued, s.Instances)
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "POOL\tMIN_IDLE\tMAX\tIDLE\tBUSY\tPROVISIONING\tINSTANCES\tWAITING")
	for _, p := range s.Pools {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\n", p.Pool, p.MinIdle, p.Max, p.Idle, p.Busy, p.Provisioning, p.Instances, p.WaitingJobs)
	}
	tw.Flush()
	b.WriteString("\nrecent events:\n")
	for _, e := range s.Events {
		b.WriteString("  " + e + "\n")
	}
	io.WriteString(w, b.String())
}

func printSummary(w io.Writer, r demo.Result) {
	perJob := 0.0
	if len(r.Jobs) > 0 {
		perJob = float64(r.GitHubRequests) / float64(len(r.Jobs))
	}
	fmt.Fprintf(w, "\nephemera demo summary (%s)\n", r.Elapsed.Round(time.Second))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "  jobs submitted\t%d\n", len(r.Jobs))
	fmt.Fprintf(tw, "  completed\t%d\n", r.Completed)
	fmt.Fprintf(tw, "  rejected by policy\t%d\n", r.Rejected)
	fmt.Fprintf(tw, "  unexpected outcomes\t%d\n", len(r.Unexpected))
	if len(r.OnlineLatencies) > 0 {
		fmt.Fprintf(tw, "  queued → fresh runner online p50 / p99\t%s / %s (%d jobs)\n", r.OnlineLatencyP50.Round(time.Millisecond), r.OnlineLatencyP99.Round(time.Millisecond), len(r.OnlineLatencies))
	}
	fmt.Fprintf(tw, "  queued → running p50 / p99\t%s / %s\n", r.LatencyP50.Round(time.Millisecond), r.LatencyP99.Round(time.Millisecond))
	fmt.Fprintf(tw, "  GitHub requests per job\t%.2f (%d in all)\n", perJob, r.GitHubRequests)
	fmt.Fprintf(tw, "  instances left\t%d\n", r.InstancesLeft)
	fmt.Fprintf(tw, "  registrations left\t%d\n", r.RegistrationsLeft)
	fmt.Fprintf(tw, "  slots / open claims left\t%d / %d\n", r.SlotsLeft, r.OpenClaims)
	tw.Flush()
	for _, u := range r.Unexpected {
		fmt.Fprintln(w, "  unexpected: "+u)
	}
}
