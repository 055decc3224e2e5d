package lxdprov

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/canonical/lxd/shared/api"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"go.yaml.in/yaml/v3"

	"github.com/ephemera-ci/ephemera/internal/config"
	"github.com/ephemera-ci/ephemera/scaler"
)

// Config configures a Provider.
type Config struct {
	// Socket is LXD's unix socket. Empty (and URL empty): SnapSocket, then
	// DebianSocket, whichever exists.
	Socket string
	// URL of a remote LXD or LXD cluster over HTTPS, instead of the socket.
	// ClientCert and ClientKey (required with URL) and ServerCert (optional:
	// the system's CAs otherwise) are the paths of PEM files.
	URL, ClientCert, ClientKey, ServerCert string
	// Project is the LXD project the instances live in. Empty: "default".
	Project string
	// Pools are the pools this deployment runs; required. Each pool's
	// image and profiles must exist in LXD.
	Pools []config.Pool
	// PolicyURL is the policy service's address as runners reach it;
	// required: http(s)://host[:port][/path].
	PolicyURL string
	// PreJobHook is the pre-job hook script written into every instance;
	// required.
	PreJobHook string
	// Network is runners.network. Zero (no name): no network guard; the
	// instances' NICs are whatever their profiles give them. Named: every
	// runner NIC is on that network with NICFilters set, and
	// EnsureNetworkGuard keeps the network's egress ACL in line.
	Network config.RunnerNetwork
	// TemplateInterval is how often Run checks each container pool's
	// template against its image. Zero: DefaultTemplateInterval.
	TemplateInterval time.Duration
	Log              zerolog.Logger
	// Registerer receives the provider's metrics. Nil: a private registry.
	Registerer prometheus.Registerer
}

// Provider creates, lists and deletes the runner instances of a set of
// pools on LXD. It is safe for concurrent use.
type Provider struct {
	srv       server // the project's, for every call not bound to a pool
	project   string
	pools     map[string]*pool
	policyURL string
	hook      string
	// createStart: LXD can create and start an instance in one operation.
	createStart bool
	guard       *guard // nil: no runners.network
	conns       *connTracker
	log         zerolog.Logger
	metrics     *metrics
	tpl         *templates
}

var _ scaler.Provisioner = (*Provider)(nil)

// pool is a configured pool, resolved against LXD.
type pool struct {
	cfg    config.Pool
	srv    server // targeted at cfg.Target when set
	source api.InstanceSource
	// devices overrides the profiles' root disk with the pool's size, and
	// their NICs with the runner network's filtered ones; nil when neither
	// applies.
	devices map[string]map[string]string
	snippet *yaml.Node // the pool's user_data, parsed; nil when empty
}

// New connects to LXD and checks that every pool's image and profiles
// exist, so a misconfiguration shows at start, in an error naming what is
// missing (wrapping scaler.ErrMisconfigured), rather than at the first job.
func New(ctx context.Context, cfg Config) (*Provider, error) {
	if err := checkConfig(&cfg); err != nil {
		return nil, err
	}
	conns := &connTracker{}
	base, where, err := connect(ctx, cfg, conns)
	if err != nil {
		return nil, fmt.Errorf("lxdprov: %w", err)
	}
	// One client for the project (and one per cluster target): each keeps
	// its own event websocket for waiting on operations.
	proj := base.UseProject(cfg.Project)
	targets := map[string]server{"": proj}
	target := func(name string) server {
		if targets[name] == nil {
			targets[name] = proj.UseTarget(name)
		}
		return targets[name]
	}
	p, err := newProvider(ctx, cfg, where, proj, target, base.HasExtension("instance_create_start"))
	if err != nil {
		conns.closeAll()
		return nil, err
	}
	p.conns = conns
	return p, nil
}

// checkConfig refuses what New cannot work with, and fills defaults.
func checkConfig(cfg *Config) error {
	if len(cfg.Pools) == 0 {
		return errors.New("lxdprov: Pools is required")
	}
	if cfg.PreJobHook == "" {
		return errors.New("lxdprov: PreJobHook is required (the policy package's pre-job script)")
	}
	if err := checkPolicyURL(cfg.PolicyURL); err != nil {
		return fmt.Errorf("lxdprov: %w", err)
	}
	if cfg.Project == "" {
		cfg.Project = "default"
	}
	return nil
}

// newProvider builds a provider on srv, the project's server; target
// returns the server of a cluster member. New passes LXD's client; tests
// pass an in-memory one (lxdfake).
func newProvider(ctx context.Context, cfg Config, where string, srv server, target func(string) server, createStart bool) (*Provider, error) {
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, fmt.Errorf("lxdprov: metrics: %w", err)
	}
	g, err := newGuard(cfg.Network, cfg.PolicyURL)
	if err != nil {
		return nil, fmt.Errorf("lxdprov: %w: %w", err, scaler.ErrMisconfigured)
	}
	p := &Provider{
		srv:         srv,
		project:     cfg.Project,
		pools:       make(map[string]*pool, len(cfg.Pools)),
		policyURL:   cfg.PolicyURL,
		hook:        cfg.PreJobHook,
		createStart: createStart,
		guard:       g,
		conns:       &connTracker{},
		log:         cfg.Log,
		metrics:     m,
		tpl:         newTemplates(cfg.TemplateInterval),
	}
	if g != nil {
		if _, _, err := runnerNetwork(srv, g.network); err != nil {
			return nil, fmt.Errorf("lxdprov: LXD %s, project %s: %w", where, cfg.Project, err)
		}
	}
	for _, pc := range cfg.Pools {
		if _, dup := p.pools[pc.Name]; dup {
			return nil, fmt.Errorf("lxdprov: pool %s is configured twice", pc.Name)
		}
		pl, err := p.resolvePool(ctx, pc, target(pc.Target))
		if err != nil {
			return nil, fmt.Errorf("lxdprov: pool %s (LXD %s, project %s): %w", pc.Name, where, cfg.Project, err)
		}
		p.pools[pc.Name] = pl
	}
	p.log.Info().Str("lxd", where).Str("project", cfg.Project).
		Strs("pools", p.poolNames()).Msg("connected to LXD")
	return p, nil
}

// poolNames returns the configured pools' names, sorted.
func (p *Provider) poolNames() []string { return slices.Sorted(maps.Keys(p.pools)) }

// Close ends the provider's connections to LXD. The provider must not be
// used afterwards.
func (p *Provider) Close() error {
	p.conns.closeAll()
	return nil
}

// resolvePool checks pc against LXD, through srv (targeted at the pool's
// cluster member when it has one): its image, its profiles and their root
// disk, and its user_data snippet.
func (p *Provider) resolvePool(ctx context.Context, pc config.Pool, srv server) (*pool, error) {
	if err := checkPool(pc); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	pl := &pool{cfg: pc, srv: srv}
	var err error
	if pl.source, err = resolveImage(srv, pc.Image); err != nil {
		return nil, err
	}
	devices, err := profileDevices(srv, pc.Profiles)
	if err != nil {
		return nil, err
	}
	rootName, root, err := rootDevice(srv, pc, devices)
	if err != nil {
		return nil, err
	}
	if root != nil {
		pl.devices = map[string]map[string]string{rootName: root}
	}
	if p.guard != nil {
		nics, err := p.guard.runnerNICs(devices)
		if err != nil {
			return nil, err
		}
		if pl.devices == nil {
			pl.devices = map[string]map[string]string{}
		}
		maps.Copy(pl.devices, nics)
	}
	if pl.snippet, err = parseSnippet(pc.UserData); err != nil {
		return nil, fmt.Errorf("user_data: %w: %w", err, scaler.ErrMisconfigured)
	}
	// Render once with stand-in secrets: a snippet that cannot merge fails now.
	if _, err := renderUserData(p.hook, p.policyURL, zeroToken, "AA==", pl.snippet); err != nil {
		return nil, fmt.Errorf("%w: %w", err, scaler.ErrMisconfigured)
	}
	return pl, nil
}

// zeroToken stands in for a policy token when checking a pool's snippet.
const zeroToken = "0000000000000000000000000000000000000000000000000000000000000000"

// resolveImage finds image as an alias, then as a fingerprint (or a
// unique prefix of one).
func resolveImage(srv server, image string) (api.InstanceSource, error) {
	if image == "" {
		return api.InstanceSource{}, fmt.Errorf("image is required: %w", scaler.ErrMisconfigured)
	}
	_, _, aliasErr := srv.GetImageAlias(image)
	if aliasErr == nil {
		return api.InstanceSource{Type: "image", Alias: image}, nil
	}
	if !isNotFound(aliasErr) {
		return api.InstanceSource{}, fmt.Errorf("look up image %q: %w", image, aliasErr)
	}
	img, _, err := srv.GetImage(image)
	if err == nil {
		return api.InstanceSource{Type: "image", Fingerprint: img.Fingerprint}, nil
	}
	if !isNotFound(err) {
		return api.InstanceSource{}, fmt.Errorf("look up image %q: %w", image, err)
	}
	return api.InstanceSource{}, fmt.Errorf("image %q not found (neither an alias nor a fingerprint): %w", image, scaler.ErrMisconfigured)
}

// profileDevices checks that every profile exists and returns the devices
// they give an instance: a device named in several profiles is the last
// one's, as LXD expands them. No profiles listed means LXD's default
// profile.
func profileDevices(srv interface {
	GetProfile(name string) (*api.Profile, string, error)
}, profiles []string) (map[string]map[string]string, error) {
	if profiles == nil {
		profiles = []string{"default"}
	}
	devices := map[string]map[string]string{}
	for _, name := range profiles {
		prof, _, err := srv.GetProfile(name)
		if isNotFound(err) {
			return nil, fmt.Errorf("profile %q not found: %w", name, scaler.ErrMisconfigured)
		}
		if err != nil {
			return nil, fmt.Errorf("look up profile %q: %w", name, err)
		}
		maps.Copy(devices, prof.Devices)
	}
	return devices, nil
}

// rootDiskIn returns the root disk device among devices, and its name.
func rootDiskIn(devices map[string]map[string]string) (string, map[string]string) {
	for _, name := range slices.Sorted(maps.Keys(devices)) {
		if dev := devices[name]; dev["type"] == "disk" && dev["path"] == "/" {
			return name, dev
		}
	}
	return "", nil
}

// runnerNetwork reads the runner network, refusing one that is missing
// or is not a bridge LXD manages: the ACL and the NIC filters need one.
func runnerNetwork(srv server, network string) (*api.Network, string, error) {
	n, etag, err := srv.GetNetwork(network)
	if isNotFound(err) {
		return nil, "", fmt.Errorf("runners.network.name: network %q not found: %w", network, scaler.ErrMisconfigured)
	}
	if err != nil {
		return nil, "", fmt.Errorf("look up network %q: %w", network, err)
	}
	if !n.Managed || n.Type != "bridge" {
		return nil, "", fmt.Errorf("runners.network.name: network %q is not a bridge LXD manages (type %q, managed %t): %w", network, n.Type, n.Managed, scaler.ErrMisconfigured)
	}
	return n, etag, nil
}
