// Command ephemera autoscales GitHub Actions self-hosted runners on LXD.
//
//	ephemera serve   --config FILE   every component in one process (NATS embedded)
//	ephemera webhook --config FILE   the webhook receiver alone
//	ephemera config check --config FILE
//	ephemera version
//
// Exit status: 0 on success, 2 on bad usage or configuration (one line
// naming the offending key), 1 on a runtime failure.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

// version is stamped by `make build` (-ldflags -X main.version=…).
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
