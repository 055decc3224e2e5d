// Package ghclient builds go-github clients for ephemera: authenticated as a
// GitHub App installation (ghinstallation refreshes the tokens) or with a
// plain token, against the configured REST base URL used as it is. Every
// request is bounded by a timeout, counted in
// ephemera_github_requests_total{op,code}, admitted by the shared request
// budget (internal/ghbudget) when one is configured — its endpoint is the
// method and the op named with WithOp — and watched for rate limits:
// without a budget, after a 403/429 with Retry-After, or
// X-RateLimit-Remaining: 0, requests fail fast with a *RateLimitedError
// until GitHub's wait is over, instead of digging the hole deeper.
package ghclient

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/bradleyfalzon/ghinstallation/v2"
	"github.com/google/go-github/v60/github"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/ephemera-ci/ephemera/internal/config"
	"github.com/ephemera-ci/ephemera/internal/ghbudget"
)

// Config says how to reach and authenticate to GitHub. Set AppID and
// PrivateKey, or Token.
type Config struct {
	APIURL string // REST base URL with a trailing slash; required

	AppID      int64
	PrivateKey config.Secret // PEM
	// InstallationID is used when a caller asks for installation 0.
	InstallationID int64

	Token config.Secret

	// Timeout bounds each request once the budget admitted it (the wait
	// for the budget is bounded by the caller's context). Default 10s.
	Timeout time.Duration
	// Transport under everything; default a clone of http.DefaultTransport.
	Transport http.RoundTripper
	// Budget, when set, admits every request (ghbudget): it waits for
	// its installation's shared budget, and a rate-limit answer fails
	// with a *ghbudget.LimitedError that stops only its endpoint (go-github
	// would stop the whole client on a secondary limit). Nil: requests go
	// at once, and a rate-limit answer stops every request until GitHub's
	// wait is over.
	Budget     *ghbudget.Budget
	Registerer prometheus.Registerer
	Log        zerolog.Logger
}

// Clients hands out go-github clients that share one transport, one
// rate-limit guard and one set of metrics.
type Clients struct {
	cfg  Config
	base *url.URL
	tr   *transport

	mu   sync.Mutex
	inst map[int64]*github.Client
	app  *github.Client
}

// ErrNoInstallation is returned by ForInstallation(0) when no installation
// id is configured and the App is in use.
var ErrNoInstallation = errors.New("no GitHub App installation id: set github.installation_id or pass the one from the event")

// New checks cfg and builds the shared transport.
func New(cfg Config) (*Clients, error) {
	base, err := url.Parse(cfg.APIURL)
	if err != nil || base.Scheme == "" || base.Host == "" {
		return nil, fmt.Errorf("ghclient: api url %q is not a URL", cfg.APIURL)
	}
	if base.Path == "" || base.Path[len(base.Path)-1] != '/' {
		base.Path += "/"
	}
	switch {
	case cfg.Token.IsZero() && (cfg.AppID == 0 || cfg.PrivateKey.IsZero()):
		return nil, errors.New("ghclient: set AppID and PrivateKey, or Token")
	case !cfg.Token.IsZero() && cfg.AppID != 0:
		return nil, errors.New("ghclient: set AppID and PrivateKey, or Token, not both")
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.Transport == nil {
		cfg.Transport = http.DefaultTransport.(*http.Transport).Clone()
	}
	if cfg.Registerer == nil {
		cfg.Registerer = prometheus.NewRegistry()
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	c := &Clients{
		cfg:  cfg,
		base: base,
		tr:   &transport{next: cfg.Transport, metrics: m, log: cfg.Log, budget: cfg.Budget, timeout: cfg.Timeout},
		inst: map[int64]*github.Client{},
	}
	if !cfg.PrivateKey.IsZero() {
		// Fail now, not at the first job, when the key does not parse.
		if _, err := ghinstallation.NewAppsTransport(c.tr, cfg.AppID, []byte(cfg.PrivateKey.Reveal())); err != nil {
			return nil, fmt.Errorf("ghclient: github app private key: %w", errors.New("not a valid RSA private key in PEM form"))
		}
	}
	return c, nil
}

// ForInstallation returns a client authenticated as the App installation id
// (0: the configured one), or with the token when no App is configured.
func (c *Clients) ForInstallation(id int64) (*github.Client, error) {
	if !c.cfg.Token.IsZero() {
		id = 0
	} else if id == 0 {
		id = c.cfg.InstallationID
		if id == 0 {
			return nil, ErrNoInstallation
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if gc, ok := c.inst[id]; ok {
		return gc, nil
	}
	var gc *github.Client
	if !c.cfg.Token.IsZero() {
		// go-github sets the token's Authorization header above the
		// shared transport, which counts the request and keeps the guard.
		gc = c.newClient(c.tr.forInstallation("token")).WithAuthToken(c.cfg.Token.Reveal())
	} else {
		itr, err := ghinstallation.New(c.tr.forInstallation(strconv.FormatInt(id, 10)), c.cfg.AppID, id, []byte(c.cfg.PrivateKey.Reveal()))
		if err != nil {
			return nil, fmt.Errorf("github app installation %d: %w", id, err)
		}
		itr.BaseURL = c.baseNoSlash()
		gc = c.newClient(itr)
	}
	c.inst[id] = gc
	return gc, nil
}

// App returns a client authenticated as the App itself (a JWT), for the
// /app endpoints such as hook deliveries. With a token it is the token
// client, whose /app calls GitHub will refuse.
func (c *Clients) App() (*github.Client, error) {
	if !c.cfg.Token.IsZero() {
		return c.ForInstallation(0)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.app != nil {
		return c.app, nil
	}
	atr, err := ghinstallation.NewAppsTransport(c.tr.forInstallation("app"), c.cfg.AppID, []byte(c.cfg.PrivateKey.Reveal()))
	if err != nil {
		return nil, fmt.Errorf("github app: %w", err)
	}
	atr.BaseURL = c.baseNoSlash()
	c.app = c.newClient(atr)
	return c.app, nil
}

// IsApp reports whether the clients authenticate as a GitHub App.
func (c *Clients) IsApp() bool { return c.cfg.Token.IsZero() }

// RateRemaining is the last X-RateLimit-Remaining GitHub sent, or -1.
func (c *Clients) RateRemaining() int { return c.tr.remaining() }

func (c *Clients) newClient(rt http.RoundTripper) *github.Client {
	// No http.Client timeout: it would count the wait for the budget;
	// the transport bounds the request itself.
	gc := github.NewClient(&http.Client{Transport: rt})
	u := *c.base
	gc.BaseURL = &u
	gc.UploadURL = &u
	return gc
}

func (c *Clients) baseNoSlash() string {
	s := c.base.String()
	return s[:len(s)-1]
}
