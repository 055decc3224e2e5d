// Package bus connects ephemera to NATS: an external cluster, or a
// nats-server embedded in the process with JetStream on disk. It creates
// the job stream and key-value buckets idempotently and reports readiness.
//
// Connections present [Auth] and speak [TLS] toward an external server; an
// embedded server requires the same Auth from every client and serves TLS
// on its listener, and it refuses to listen beyond loopback without both
// ([ErrExposedWithoutTLSAndAuth]).
package bus

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/ephemera-ci/ephemera/internal/jobs"
)

// StreamMaxAge is how long job events are kept in the stream. Consumers
// ack them long before; the history is there for operators.
const StreamMaxAge = 7 * 24 * time.Hour

// Config says where NATS is.
type Config struct {
	// URL of an external NATS (comma-separated servers). Empty: embed a
	// server with JetStream in StoreDir.
	URL string
	// Auth: the credentials the connection presents and, embedded, the
	// ones the server requires from every client. Optional on loopback.
	Auth Auth
	// TLS of the connection to URL, or of the embedded server's listener.
	TLS TLS

	StoreDir string // required when embedded
	// Listen, embedded: expose the server on host:port; empty: in-process
	// only. Beyond loopback (an empty host included) it needs TLS and Auth.
	Listen string

	// DuplicateWindow of the job stream. Default 1h.
	DuplicateWindow time.Duration
	// Replicas of the stream and buckets. Default 1.
	Replicas int
	// Name identifies the connection on the server (e.g. "ephemera-webhook").
	Name string

	Log zerolog.Logger
}

// Bus is a NATS connection with JetStream, and the embedded server when
// there is one.
type Bus struct {
	Conn *nats.Conn
	JS   jetstream.JetStream

	cfg      Config
	embedded *server.Server
	log      zerolog.Logger
	ready    atomic.Bool // the stream was ensured at least once
	closing  atomic.Bool // Close was called: disconnects are expected
}

// Open connects (starting the embedded server first when cfg.URL is empty)
// and ensures the job stream. Against an external cluster it keeps trying
// until ctx ends; the connection itself reconnects forever.
func Open(ctx context.Context, cfg Config) (*Bus, error) {
	if cfg.DuplicateWindow == 0 {
		cfg.DuplicateWindow = time.Hour
	}
	if cfg.Replicas == 0 {
		cfg.Replicas = 1
	}
	if cfg.Name == "" {
		cfg.Name = "ephemera"
	}
	b := &Bus{cfg: cfg, log: cfg.Log}
	opts := []nats.Option{
		nats.Name(cfg.Name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		nats.ReconnectJitter(500*time.Millisecond, time.Second),
		nats.RetryOnFailedConnect(true),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if !b.closing.Load() {
				b.log.Warn().Err(err).Msg("nats disconnected")
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			b.log.Info().Str("server", nc.ConnectedUrlRedacted()).Msg("nats reconnected")
		}),
		// Asynchronous errors are otherwise silent: a slow consumer drops
		// messages — replies a request then waits for until its deadline,
		// watch updates — and nothing would say so.
		nats.ErrorHandler(b.asyncError),
	}
	url := cfg.URL
	if url == "" {
		s, err := startEmbedded(cfg)
		if err != nil {
			return nil, err
		}
		b.embedded = s
		opts = append(opts, nats.InProcessServer(s))
	}
	sec, err := cfg.clientOptions(url != "")
	if err != nil {
		b.shutdownServer()
		return nil, err
	}
	opts = append(opts, sec...)
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		b.shutdownServer()
		return nil, fmt.Errorf("connect to nats: %w", err)
	}
	b.Conn = nc
	if b.JS, err = jetstream.New(nc); err != nil {
		b.Close()
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	if err := b.retry(ctx, "ensure job stream", b.ensureStream); err != nil {
		b.Close()
		return nil, err
	}
	b.ready.Store(true)
	return b, nil
}

// asyncErrorLog samples asynchronous error logs: a slow consumer reports
// every message it drops.
var asyncErrorLog = &zerolog.BurstSampler{Burst: 5, Period: 10 * time.Second}

// asyncError logs an error the connection met outside any call: a slow
// consumer (with its subject and how many messages it dropped so far) or
// a permission violation.
func (b *Bus) asyncError(_ *nats.Conn, sub *nats.Subscription, err error) {
	log := b.log.Sample(asyncErrorLog)
	ev := log.Error().Err(err)
	if sub != nil {
		ev = ev.Str("subject", sub.Subject)
		if n, derr := sub.Dropped(); derr == nil {
			ev = ev.Int("dropped", n)
		}
	}
	ev.Msg("nats: messages lost or refused")
}

func startEmbedded(cfg Config) (*server.Server, error) {
	if cfg.StoreDir == "" {
		return nil, errors.New("embedded nats: store dir is required")
	}
	opts := &server.Options{
		ServerName: "ephemera-embedded",
		JetStream:  true,
		StoreDir:   cfg.StoreDir,
		DontListen: cfg.Listen == "",
		NoSigs:     true,
		NoLog:      true,
	}
	if cfg.Listen != "" {
		host, port, err := net.SplitHostPort(cfg.Listen)
		if err != nil {
			return nil, fmt.Errorf("embedded nats: listen %q: %w", cfg.Listen, err)
		}
		if opts.Port, err = strconv.Atoi(port); err != nil {
			return nil, fmt.Errorf("embedded nats: listen %q: bad port", cfg.Listen)
		}
		opts.Host = host
		if host == "" {
			opts.Host = "0.0.0.0"
		}
	}
	if err := secureServer(opts, cfg); err != nil {
		return nil, err
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return nil, errors.New("embedded nats: not ready after 10s")
	}
	return s, nil
}

// StreamConfig is the job stream's configuration for the given settings.
func StreamConfig(duplicateWindow time.Duration, replicas int) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        jobs.Stream,
		Description: "GitHub workflow_job events, one message per delivery",
		Subjects:    []string{jobs.SubjectAll},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		MaxAge:      StreamMaxAge,
		Duplicates:  duplicateWindow,
		Replicas:    replicas,
	}
}

func (b *Bus) ensureStream(ctx context.Context) error {
	_, err := b.JS.CreateOrUpdateStream(ctx, StreamConfig(b.cfg.DuplicateWindow, b.cfg.Replicas))
	return err
}

// KeyValue creates or updates a key-value bucket with the bus's replica
// count and returns it.
func (b *Bus) KeyValue(ctx context.Context, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	cfg.Replicas = b.cfg.Replicas
	if cfg.Storage == 0 {
		cfg.Storage = jetstream.FileStorage
	}
	var kv jetstream.KeyValue
	err := b.retry(ctx, "ensure bucket "+cfg.Bucket, func(ctx context.Context) error {
		var err error
		kv, err = b.JS.CreateOrUpdateKeyValue(ctx, cfg)
		return err
	})
	return kv, err
}

// retry runs op until it succeeds or ctx ends, backing off from 250ms to 5s.
func (b *Bus) retry(ctx context.Context, what string, op func(context.Context) error) error {
	wait := 250 * time.Millisecond
	for {
		attempt, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := op(attempt)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		b.log.Warn().Err(err).Dur("retry_in", wait).Msg(what + " failed")
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", what, err)
		case <-time.After(wait):
		}
		wait = min(wait*2, 5*time.Second)
	}
}

// Ready reports whether the bus can take events now: connected, and the
// job stream exists.
func (b *Bus) Ready(ctx context.Context) error {
	if !b.ready.Load() {
		return errors.New("job stream not ensured yet")
	}
	if !b.Conn.IsConnected() {
		return errors.New("nats not connected")
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := b.JS.Stream(ctx, jobs.Stream); err != nil {
		return fmt.Errorf("job stream: %w", err)
	}
	return nil
}

// ClientURL is the URL other processes reach the embedded server at, or
// the configured URL. Empty for an in-process-only embedded server.
func (b *Bus) ClientURL() string {
	if b.embedded == nil {
		return b.cfg.URL
	}
	if b.cfg.Listen == "" {
		return ""
	}
	return b.embedded.ClientURL()
}

// Close drains the connection (pending publishes are flushed) and stops
// the embedded server.
func (b *Bus) Close() {
	b.closing.Store(true)
	if b.Conn != nil && !b.Conn.IsClosed() {
		closed := make(chan struct{})
		b.Conn.SetClosedHandler(func(*nats.Conn) { close(closed) })
		if err := b.Conn.Drain(); err != nil {
			b.Conn.Close()
		} else {
			select {
			case <-closed:
			case <-time.After(10 * time.Second):
				b.Conn.Close()
			}
		}
	}
	b.shutdownServer()
}

func (b *Bus) shutdownServer() {
	if b.embedded != nil {
		b.embedded.Shutdown()
		b.embedded.WaitForShutdown()
	}
}
