package scaler

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"

	"github.com/ephemera-ci/ephemera/internal/config"
	"github.com/ephemera-ci/ephemera/internal/logkey"
)

// TokenMinter mints the one-time policy token a runner's pre-job hook
// presents, and keeps it valid while the runner waits idle.
// internal/tokens implements it on JetStream KV.
type TokenMinter interface {
	Mint(ctx context.Context, runnerName string) (string, error)
	// Extend keeps the unconsumed token with ID id (tokens.ID), minted
	// for runnerName, valid for another TTL and returns its new expiry;
	// tokens.ErrUnknownToken when it was consumed, expired or is
	// unknown.
	Extend(ctx context.Context, id, runnerName string) (time.Time, error)
}

// JetStream is what the scaler uses of a JetStream context, nats.go's
// role interfaces: its key-value buckets, and the shared consumer on the
// job stream; and the connection, for reads the buckets' stream leaders
// answer (bus.LeaderReads). A jetstream.JetStream is one.
type JetStream interface {
	jetstream.KeyValueManager
	jetstream.StreamConsumerManager
	Conn() *nats.Conn
}

var _ JetStream = jetstream.JetStream(nil)

// Config configures a Scaler. Zero optional fields take the defaults named.
type Config struct {
	Pools       []config.Pool // required, at least one
	JetStream   JetStream     // required; the job stream must exist
	Provisioner Provisioner   // required
	GitHub      GitHub        // required
	Tokens      TokenMinter   // required

	// Reconcile loop timing (reconcile.*). Defaults 30s, 10m, 2m.
	Interval         time.Duration
	BootstrapTimeout time.Duration
	IdleGrace        time.Duration

	// TokenTTL is how long the token store keeps a minted or extended
	// token valid (policy.token_ttl). An idle runner's token is extended
	// once less than half of it is left. Default BootstrapTimeout + 1h,
	// as in the configuration.
	TokenTTL time.Duration
	// MaxRunnerAge is the age past which an idle runner is replaced
	// (deregistered first) instead of having its token extended
	// (reconcile.max_runner_age). Default 24h.
	MaxRunnerAge time.Duration

	// VersionCheckInterval is how often the leader asks GitHub for the
	// newest runner version, to warn when the pools' images pin an older
	// one (versions.go). Default 24h.
	VersionCheckInterval time.Duration

	// ProvisionTimeout bounds one runner's registration and instance
	// creation; a job claim older than this is taken over. Default 5m.
	ProvisionTimeout time.Duration
	// AckWait of the shared consumer; the scaler heartbeats while it
	// provisions. Default 30s.
	AckWait time.Duration
	// MaxDeliver bounds a message's deliveries; past it the reconciler
	// still covers the job. Default 0: unbounded, because a job waiting
	// for a slot in a full pool is delivered again every CapacityRetry
	// for as long as the pool is full; failures back off up to a minute.
	MaxDeliver int
	// CapacityRetry is how long a job waits before it asks again for a
	// slot in a full pool. Default 2s.
	CapacityRetry time.Duration
	// Concurrency is how many messages one replica handles at once.
	// Default 64.
	Concurrency int
	// ShutdownGrace is how long in-flight work may finish after ctx ends
	// before it is cancelled and undone. Default 10s.
	ShutdownGrace time.Duration
	// LivenessTTL is how long a replica's liveness key outlives its last
	// renewal (every LivenessTTL/5): a replica silent for that long has
	// its in-flight provisioning taken over. Default 5s.
	LivenessTTL time.Duration
	// Replicas of the KV buckets (nats.replicas). Default 1.
	Replicas int
	// Consumer is the durable consumer's name. Default "ephemera-scaler".
	Consumer string
	// ReplicaID names this replica in claims and the leader lease.
	// Default: random.
	ReplicaID string
	// RedeliverLookback is how far back hook deliveries are searched for
	// failed ones when no cursor is stored yet. Default 1h.
	RedeliverLookback time.Duration

	Log        zerolog.Logger
	Registerer prometheus.Registerer // nil: a private registry
	// Now is the clock every decision reads (deadlines, idle and
	// bootstrap times, the leader's interval). Default time.Now; tests
	// set it to move time without waiting.
	Now func() time.Time
}

// Scaler consumes queued jobs and keeps every pool's runners within its
// bounds. Create it with New, run it with Run.
type Scaler struct {
	cfg   Config
	pools map[string]config.Pool
	log   zerolog.Logger
	m     *metrics
	kv    *stores
	cons  jetstream.Consumer
	slots *slotView
	auto  autoIdle // the leader's min_idle: auto samples (autoidleleader.go)

	sweepReq chan string // pools to sweep soon

	versionTried time.Time // the leader's last runner version check; its goroutine only
	// The leader's delivery-log reads (deliveries.go); only the lead
	// loop touches them.
	deliveryPass       int
	deliveryUnresolved bool
	// listPass counts passes for the runner list's cadence (listing.go);
	// listFailed: the last read of it failed.
	listPass   int
	listFailed bool
}

// New checks cfg, fills defaults, and creates the KV buckets and the
// shared consumer when they do not exist.
func New(ctx context.Context, cfg Config) (*Scaler, error) {
	switch {
	case len(cfg.Pools) == 0:
		return nil, errors.New("scaler: Config.Pools is required")
	case cfg.JetStream == nil:
		return nil, errors.New("scaler: Config.JetStream is required")
	case cfg.Provisioner == nil:
		return nil, errors.New("scaler: Config.Provisioner is required")
	case cfg.GitHub == nil:
		return nil, errors.New("scaler: Config.GitHub is required")
	case cfg.Tokens == nil:
		return nil, errors.New("scaler: Config.Tokens is required")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.Interval, 30*time.Second)
	def(&cfg.BootstrapTimeout, 10*time.Minute)
	def(&cfg.IdleGrace, 2*time.Minute)
	def(&cfg.ProvisionTimeout, 5*time.Minute)
	def(&cfg.TokenTTL, cfg.BootstrapTimeout+time.Hour)
	def(&cfg.MaxRunnerAge, 24*time.Hour)
	def(&cfg.VersionCheckInterval, 24*time.Hour)
	def(&cfg.AckWait, 30*time.Second)
	def(&cfg.CapacityRetry, 2*time.Second)
	def(&cfg.ShutdownGrace, 10*time.Second)
	def(&cfg.RedeliverLookback, time.Hour)
	def(&cfg.LivenessTTL, 5*time.Second)
	if cfg.MaxDeliver <= 0 {
		cfg.MaxDeliver = -1
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 64
	}
	if cfg.Replicas <= 0 {
		cfg.Replicas = 1
	}
	if cfg.Consumer == "" {
		cfg.Consumer = "ephemera-scaler"
	}
	if cfg.ReplicaID == "" {
		b := make([]byte, 4)
		_, _ = rand.Read(b)
		cfg.ReplicaID = "scaler-" + hex.EncodeToString(b)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Registerer == nil {
		cfg.Registerer = prometheus.NewRegistry()
	}
	s := &Scaler{
		cfg:      cfg,
		pools:    map[string]config.Pool{},
		log:      cfg.Log.With().Str(logkey.Component, "scaler").Str(logkey.Replica, cfg.ReplicaID).Logger(),
		slots:    newSlotView(),
		sweepReq: make(chan string, 16),
	}
	for _, p := range cfg.Pools {
		if p.Max < 1 || p.MinIdle > p.Max {
			return nil, fmt.Errorf("scaler: pool %s: need 1 ≤ max and min_idle ≤ max", p.Name)
		}
		if p.AutoIdle && (p.IdleMin < 0 || p.IdleMax < p.IdleMin || p.IdleMax > p.Max || p.TargetWait.Quantile <= 0 || p.TargetWait.Quantile >= 1) {
			return nil, fmt.Errorf("scaler: pool %s: min_idle: auto needs 0 ≤ idle_min ≤ idle_max ≤ max and a target_wait percentile", p.Name)
		}
		s.pools[p.Name] = p
	}
	var err error
	if s.m, err = newMetrics(cfg.Registerer); err != nil {
		return nil, err
	}
	if s.kv, err = openStores(ctx, cfg.JetStream, cfg.JetStream.Conn(), cfg.Replicas, s.leaseTTL(), cfg.LivenessTTL); err != nil {
		return nil, err
	}
	if s.cons, err = ensureConsumer(ctx, cfg.JetStream, cfg); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Scaler) now() time.Time { return s.cfg.Now() }

// leaseTTL is how long a leader's lease lasts without renewal.
func (s *Scaler) leaseTTL() time.Duration { return max(3*s.cfg.Interval, time.Second) }

// Run consumes job events, keeps the slot view current, sweeps full pools
// on request and, while this replica holds the lease, reconciles; all the
// while it renews its liveness key. It returns when ctx ends, after
// in-flight work finished or was undone, and only then deletes the key.
func (s *Scaler) Run(ctx context.Context) error {
	s.beat(ctx) // alive before the first claim
	hbCtx, stopHB := context.WithCancel(context.WithoutCancel(ctx))
	hbDone := make(chan struct{})
	go func() { defer close(hbDone); s.heartbeat(hbCtx) }()
	defer func() { stopHB(); <-hbDone }()
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.watchSlots(ctx) })
	g.Go(func() error { return s.sweeper(ctx) })
	g.Go(func() error { return s.lead(ctx) })
	g.Go(func() error { return s.consume(ctx) })
	return g.Wait()
}
