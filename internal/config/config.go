package config

import (
	"time"
)

// Config is the whole configuration file. Secrets are not part of the YAML:
// the *_file keys name files, and environment variables override them
// (see [Secrets]).
type Config struct {
	Webhook   Webhook   `yaml:"webhook"`
	Policy    Policy    `yaml:"policy"`
	Metrics   Metrics   `yaml:"metrics"`
	NATS      NATS      `yaml:"nats"`
	GitHub    GitHub    `yaml:"github"`
	LXD       LXD       `yaml:"lxd"`
	Reconcile Reconcile `yaml:"reconcile"`
	Runners   Runners   `yaml:"runners"`
	Pools     []Pool    `yaml:"pools"`
	Status    Status    `yaml:"status"`

	// Secrets are filled by Load from the *_file keys and the environment.
	Secrets Secrets `yaml:"-"`
}

// Webhook configures the GitHub webhook receiver.
type Webhook struct {
	Listen string `yaml:"listen"` // default ":8080"
	Path   string `yaml:"path"`   // default "/webhook"
	// SecretFile holds the webhook secret. It may hold several secrets, one
	// per line: a delivery signed with any of them is accepted, which is how
	// a secret is rotated without downtime. EPHEMERA_WEBHOOK_SECRET
	// overrides it (one secret).
	SecretFile string `yaml:"secret_file"`
	MaxBody    Size   `yaml:"max_body"` // default 1MiB
	// PublishTimeout bounds the wait for JetStream's PubAck; past it the
	// delivery is answered 503. Default 5s, well under GitHub's 10 s.
	PublishTimeout Duration `yaml:"publish_timeout"`
	// BodyTimeout bounds how long a delivery's body may take to arrive;
	// a slower one is answered 408. Default 10s.
	BodyTimeout Duration `yaml:"body_timeout"`
	// MaxBodiesAtOnce bounds how many bodies over 32 KiB (more than any
	// workflow_job delivery) are read at once; default 64.
	MaxBodiesAtOnce int `yaml:"max_bodies_at_once"`
}

// Policy configures the pre-job compliance service.
type Policy struct {
	Listen string `yaml:"listen"` // default ":8081"
	// AdminTokenFile holds the operator token; EPHEMERA_POLICY_ADMIN_TOKEN
	// overrides it.
	AdminTokenFile string `yaml:"admin_token_file"`
	// URL is the policy service's address as runners reach it.
	URL string `yaml:"url"`
	// TokenTTL is how long a one-time token stays valid. Default:
	// reconcile.bootstrap_timeout plus one hour. The scaler extends an
	// idle runner's token once less than half of it is left, so it must
	// be at least four reconcile intervals.
	TokenTTL Duration `yaml:"token_ttl"`
	// AuthorizationPhrase starts the PR comment that authorizes a fork's
	// commit to run. Default "/ephemera run-workflows".
	AuthorizationPhrase string `yaml:"authorization_phrase"`
	// DefaultDisallowFork enables disallow_fork in the default policy.
	DefaultDisallowFork bool `yaml:"default_disallow_fork"`
	// CacheTTL is how long a GitHub answer is served without asking again.
	// Default 30s.
	CacheTTL Duration `yaml:"cache_ttl"`
	// GitHubTimeout bounds each GitHub request. Default 10s.
	GitHubTimeout Duration `yaml:"github_timeout"`
	// TLS, when set, makes the policy listener serve HTTPS; runners then
	// reach it at an https:// policy.url and the pre-job hook verifies
	// its certificate. Empty: plain HTTP.
	TLS ListenerTLS `yaml:"tls"`
}

// ListenerTLS is a listener's certificate and key (PEM files). The key
// file is held to the rules of a secret file: readable by its owner only.
type ListenerTLS struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Enabled reports whether a certificate is configured.
func (t ListenerTLS) Enabled() bool { return t.CertFile != "" || t.KeyFile != "" }

// Metrics configures the Prometheus listener.
type Metrics struct {
	Listen string `yaml:"listen"` // default "127.0.0.1:9090"
}

// NATS configures the message bus.
type NATS struct {
	// URL of an external NATS cluster (comma-separated servers). Empty:
	// `ephemera serve` embeds a server. Required for single components.
	URL string `yaml:"url"`
	// CredsFile is a NATS credentials file (JWT and nkey) for the external
	// cluster. Client authentication is one of creds_file, user with
	// password_file, or nkey_seed_file.
	CredsFile string `yaml:"creds_file"`
	// User and PasswordFile: a user name and the file holding its
	// password (EPHEMERA_NATS_PASSWORD overrides the file). Presented to
	// nats.url; required from every client by the embedded server.
	User         string `yaml:"user"`
	PasswordFile string `yaml:"password_file"`
	// NkeySeedFile holds a user nkey seed ("SU…"; EPHEMERA_NATS_NKEY_SEED
	// overrides it): the connection signs the server's nonce with it, and
	// the embedded server accepts its public key.
	NkeySeedFile string `yaml:"nkey_seed_file"`
	// TLS: to nats.url, verify the server against ca_file (else the system
	// roots) and present cert_file/key_file when set; on the embedded
	// server's listener, serve cert_file/key_file and, with ca_file,
	// require client certificates signed by it.
	TLS NATSTLS `yaml:"tls"`
	// StoreDir is where the embedded server keeps JetStream's files.
	// Default /var/lib/ephemera/nats.
	StoreDir string `yaml:"store_dir"`
	// Listen exposes the embedded server on host:port. Empty: in-process only.
	Listen string `yaml:"listen"`
	// DuplicateWindow is how long a delivery id is remembered. Default 1h.
	DuplicateWindow Duration `yaml:"duplicate_window"`
	// Replicas of the stream and KV buckets: 1, or 3 on a cluster. Default 1.
	Replicas int `yaml:"replicas"`
}

// NATSTLS names the PEM files of NATS's TLS.
type NATSTLS struct {
	CAFile   string `yaml:"ca_file"`
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// GitHub configures the GitHub API client and where runners register.
type GitHub struct {
	// APIURL is the REST base URL, used as it is. Default
	// https://api.github.com/; GitHub Enterprise Server: https://HOST/api/v3/.
	APIURL         string `yaml:"api_url"`
	AppID          int64  `yaml:"app_id"`
	PrivateKeyFile string `yaml:"private_key_file"` // EPHEMERA_GITHUB_PRIVATE_KEY overrides
	// InstallationID is optional: it is taken from the webhook payload
	// when absent.
	InstallationID int64 `yaml:"installation_id"`
	// TokenFile holds a token used instead of the App, for small setups;
	// EPHEMERA_GITHUB_TOKEN overrides it.
	TokenFile string `yaml:"token_file"`
	// Org or Repo ("owner/name"): where runners are registered. One of them.
	Org           string `yaml:"org"`
	Repo          string `yaml:"repo"`
	RunnerGroupID int64  `yaml:"runner_group_id"` // default 1 (for org runners)
	// Budget is the request budget every process shares per installation.
	Budget GitHubBudget `yaml:"budget"`
}

// GitHubBudget configures the GitHub request budget that every scaler and
// policy process shares per installation, in NATS (internal/ghbudget).
// Zero values take GitHub's documented limits.
type GitHubBudget struct {
	// PointsPerMinute per REST endpoint, all processes together (GET 1
	// point, POST/PATCH/PUT/DELETE 5). Default 900.
	PointsPerMinute int `yaml:"points_per_minute"`
	// MaxConcurrent requests in flight, all processes together. Default 100.
	MaxConcurrent int `yaml:"max_concurrent"`
	// MaxWait: a request whose budget comes back later than this fails at
	// once (a job is then delivered again later). Default 2m.
	MaxWait Duration `yaml:"max_wait"`
}

// LXD configures the connection to LXD.
type LXD struct {
	// Socket is the local unix socket. Empty: the snap's path, then Debian's.
	Socket string `yaml:"socket"`
	// URL of a remote LXD (or cluster) over HTTPS, instead of the socket.
	URL        string `yaml:"url"`
	ClientCert string `yaml:"client_cert"` // files, with url
	ClientKey  string `yaml:"client_key"`
	ServerCert string `yaml:"server_cert"`
	Project    string `yaml:"project"` // default "default"
}

// Reconcile configures the reconciler.
type Reconcile struct {
	Interval         Duration `yaml:"interval"`          // default 30s
	BootstrapTimeout Duration `yaml:"bootstrap_timeout"` // default 10m
	IdleGrace        Duration `yaml:"idle_grace"`        // default 2m
	// ProvisionTimeout bounds one runner's registration and instance
	// creation; a job whose scaler replica died mid-way is taken over, and
	// its half-made instance cleaned up, once it passes. Default 5m.
	ProvisionTimeout Duration `yaml:"provision_timeout"`
	// MaxRunnerAge is the age past which an idle runner is replaced
	// (deregistered on GitHub first, then deleted) instead of having its
	// one-time policy token extended once more: it bounds how long a warm
	// runner may wait, and how long an image rolled forward takes to
	// reach every idle runner. Default 24h (also when 0); more than
	// bootstrap_timeout.
	MaxRunnerAge Duration `yaml:"max_runner_age"`
}

// Pool is a set of identical runners.
type Pool struct {
	// Name: 1-30 characters of [a-z0-9-], starting and ending with a
	// letter or digit. It appears in instance names and NATS subjects.
	Name   string   `yaml:"name"`
	Labels []string `yaml:"labels"`
	// InstanceType is "virtual-machine" (default) or "container".
	InstanceType string `yaml:"instance_type"`
	Image        string `yaml:"image"`  // alias or fingerprint; required
	CPU          int    `yaml:"cpu"`    // default 2
	Memory       Size   `yaml:"memory"` // default 4GiB
	Disk         Size   `yaml:"disk"`   // default 20GiB
	// MinIdle is the idle buffer the reconciler keeps; with
	// min_idle: auto it is 0 and AutoIdle is set.
	MinIdle int `yaml:"-"`
	// MinIdleKey is min_idle as written (a number or auto); Parse copies
	// it into MinIdle and AutoIdle.
	MinIdleKey MinIdleValue `yaml:"min_idle"`
	// AutoIdle: the leader sizes the buffer from the observed arrival
	// rate and the measured queued → online time, between IdleMin and
	// IdleMax, for TargetWait (scaler/autoidle.go).
	AutoIdle   bool       `yaml:"-"`
	IdleMin    int        `yaml:"idle_min"`
	IdleMax    int        `yaml:"idle_max"`
	TargetWait TargetWait `yaml:"target_wait"`
	Max        int        `yaml:"max"`      // required, ≥ 1 and ≥ min_idle
	Profiles   []string   `yaml:"profiles"` // default [default]
	// Target places this pool's instances on one LXD cluster member.
	Target string `yaml:"target"`
	// UserData is a cloud-config snippet merged after ephemera's own.
	UserData string `yaml:"user_data"`
	// StoragePool is the LXD storage pool the instances' root disks live
	// on. Empty: the one the profiles' root disk names. A copy-on-write
	// driver (btrfs, zfs, lvm thin) creates instances much faster than dir.
	StoragePool string `yaml:"storage_pool"`
	// Template: container instances are copies of a template instance
	// prepared once per image (started once so its rootfs is shifted to
	// the containers' id map, its machine identity and cloud-init state
	// reset, stopped), instead of new instances from the image: faster to
	// start, copy-on-write on a btrfs or zfs storage pool. Instances come
	// from the image while there is no template. Containers only.
	Template bool `yaml:"template"`
}

// Secrets are the credentials Load read from files or the environment.
type Secrets struct {
	// WebhookSecrets are every accepted webhook secret, newest first.
	WebhookSecrets   []Secret
	PolicyAdminToken Secret
	GitHubPrivateKey Secret
	GitHubToken      Secret
	StatusToken      Secret
	NATSPassword     Secret
	NATSNkeySeed     Secret
}

// Environment variables that override the *_file keys.
const (
	EnvWebhookSecret    = "EPHEMERA_WEBHOOK_SECRET"
	EnvPolicyAdminToken = "EPHEMERA_POLICY_ADMIN_TOKEN"
	EnvGitHubPrivateKey = "EPHEMERA_GITHUB_PRIVATE_KEY"
	EnvGitHubToken      = "EPHEMERA_GITHUB_TOKEN"
	EnvStatusToken      = "EPHEMERA_STATUS_TOKEN"
	EnvNATSPassword     = "EPHEMERA_NATS_PASSWORD"
	EnvNATSNkeySeed     = "EPHEMERA_NATS_NKEY_SEED"
)

// Instance types a pool may use.
const (
	InstanceVM        = "virtual-machine"
	InstanceContainer = "container"
)

// Default returns the configuration every file starts from.
func Default() Config {
	return Config{
		Webhook: Webhook{
			Listen:          ":8080",
			Path:            "/webhook",
			MaxBody:         1 << 20,
			PublishTimeout:  Duration(5 * time.Second),
			BodyTimeout:     Duration(10 * time.Second),
			MaxBodiesAtOnce: 64,
		},
		Policy: Policy{
			Listen:              ":8081",
			AuthorizationPhrase: "/ephemera run-workflows",
			CacheTTL:            Duration(30 * time.Second),
			GitHubTimeout:       Duration(10 * time.Second),
		},
		Metrics: Metrics{Listen: "127.0.0.1:9090"},
		NATS: NATS{
			StoreDir:        "/var/lib/ephemera/nats",
			DuplicateWindow: Duration(time.Hour),
			Replicas:        1,
		},
		GitHub: GitHub{
			APIURL:        "https://api.github.com/",
			RunnerGroupID: 1,
		},
		LXD: LXD{Project: "default"},
		Reconcile: Reconcile{
			Interval:         Duration(30 * time.Second),
			BootstrapTimeout: Duration(10 * time.Minute),
			IdleGrace:        Duration(2 * time.Minute),
			ProvisionTimeout: Duration(5 * time.Minute),
			MaxRunnerAge:     Duration(24 * time.Hour),
		},
		Runners: Runners{Network: RunnerNetwork{EgressDeny: DefaultEgressDeny()}},
	}
}

// defaultPool fills a pool's optional fields.
func defaultPool(p *Pool) {
	p.MinIdle, p.AutoIdle = p.MinIdleKey.N, p.MinIdleKey.Auto
	if p.InstanceType == "" {
		p.InstanceType = InstanceVM
	}
	if p.CPU == 0 {
		p.CPU = 2
	}
	if p.Memory == 0 {
		p.Memory = 4 << 30
	}
	if p.Disk == 0 {
		p.Disk = 20 << 30
	}
	if p.Profiles == nil {
		p.Profiles = []string{"default"}
	}
}

// TokenTTL returns policy.token_ttl, or its default.
func (c *Config) TokenTTL() time.Duration {
	if c.Policy.TokenTTL > 0 {
		return c.Policy.TokenTTL.D()
	}
	return c.Reconcile.BootstrapTimeout.D() + time.Hour
}

// Pool returns the pool named name.
func (c *Config) Pool(name string) (Pool, bool) {
	for _, p := range c.Pools {
		if p.Name == name {
			return p, true
		}
	}
	return Pool{}, false
}
