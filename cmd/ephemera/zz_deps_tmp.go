package main
import (
 _ "github.com/canonical/lxd/client"
 _ "github.com/canonical/lxd/shared/api"
 _ "github.com/google/go-github/v60/github"
 _ "github.com/prometheus/client_golang/prometheus/promhttp"
 _ "github.com/bradleyfalzon/ghinstallation/v2"
 _ "github.com/google/go-cmp/cmp"
 _ "go.uber.org/goleak"
 _ "golang.org/x/sync/errgroup"
 _ "github.com/rs/zerolog/hlog"
 _ "github.com/nats-io/nats.go/jetstream"
)

