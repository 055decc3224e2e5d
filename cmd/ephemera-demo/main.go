// Command ephemera-demo runs the whole of ephemera on this machine — an
// embedded NATS, the GitHub stand-in, webhook, scaler and policy in one
// process, and real LXD containers running the stand-in runner — submits
// a stream of jobs, shows runners come and go, and prints a summary.
// `make demo` builds and runs it after setting up LXD and the stand-in
// image. It is a command of its own so that the production binary,
// ephemera, ships neither the GitHub stand-in nor net/http/httptest.
//
//	ephemera-demo [--jobs 30] [--rate 2] [--pools 2] [--image NAME] [--plain] [--log FILE]
//
// Exit status: 0 when every job ended as planned and nothing was left, 2
// on bad usage, 1 otherwise.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
