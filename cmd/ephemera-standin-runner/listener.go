package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/ephemera-ci/ephemera/internal/githubfake"
)

// The tarball's mode: bin/Runner.Listener run --jitconfig X, as run.sh
// starts it.

// listen is `Runner.Listener run --jitconfig X`. The runner's root is the
// directory above bin/, as for the real runner; its .env is loaded into
// the environment first.
func listen(ctx context.Context, args []string) error {
	logf("Runner.Listener %s started", version)
	fs := flag.NewFlagSet("Runner.Listener run", flag.ContinueOnError)
	encoded := fs.String("jitconfig", "", "the runner's JIT configuration")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *encoded == "" {
		return errors.New("run: --jitconfig is required (the stand-in runner is registered just in time only)")
	}
	jit, err := githubfake.DecodeJITConfig(*encoded)
	if err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("run: locate the runner: %w", err)
	}
	root := filepath.Dir(filepath.Dir(exe))
	if err := loadDotEnv(filepath.Join(root, ".env")); err != nil {
		return err
	}
	return listenAs(ctx, root, jit)
}

// listenAs runs one job as the runner installed at root. SIGINT or
// SIGTERM — the pre-job hook stops Runner.Listener with SIGINT when it
// refuses the job — end the wait for a job; once a job is taken, the
// runner still reports its outcome and log before exiting, as the real
// runner uploads its logs.
func listenAs(ctx context.Context, root string, jit githubfake.JITConfig) error {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	waitCtx, stopWaiting := context.WithCancel(ctx)
	defer stopWaiting()
	go func() {
		select {
		case sig := <-sigs:
			logf("received %s", sig)
			stopWaiting()
		case <-waitCtx.Done():
		}
	}()
	sess := newSession(jit)
	return sess.runOne(ctx, waitCtx, func(ctx context.Context, j job, jobLog io.Writer) error {
		stopWaiting() // taken: a signal from now on no longer drops the job
		return runJobStartedHook(ctx, hookRun{root: root, runner: jit.Name, job: j, apiURL: jit.URL}, jobLog)
	})
}
