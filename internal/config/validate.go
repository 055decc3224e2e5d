package config

import (
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// MaxPoolName is the longest pool name: instance names are
// "eph-<pool>-<suffix>" and must fit LXD's 63 characters.
const MaxPoolName = 30

var poolNameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?$`)

// storagePoolRE: an LXD storage pool name (LXD refuses '/', and names
// starting with '-' or '.' would read as options or paths).
var storagePoolRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$`)

// Validate checks the configuration for role and returns the first problem
// as a *KeyError.
func (c *Config) Validate(role Role) error {
	checks := []func(Role) error{c.validateListeners, c.validateNATS, c.validateGitHub, c.validateLXD, c.validateReconcile, c.validateRunners, c.validatePools}
	for _, check := range checks {
		if err := check(role); err != nil {
			return err
		}
	}
	return nil
}

func (c *Config) validateListeners(role Role) error {
	if role.runsWebhook() {
		if err := checkListen("webhook.listen", c.Webhook.Listen); err != nil {
			return err
		}
		if !strings.HasPrefix(c.Webhook.Path, "/") {
			return keyErr("webhook.path", fmt.Sprintf("must start with /, got %q", c.Webhook.Path))
		}
		if c.Webhook.MaxBody <= 0 {
			return keyErr("webhook.max_body", "must be greater than zero")
		}
		if c.Webhook.PublishTimeout <= 0 || c.Webhook.PublishTimeout.D() >= 10*time.Second {
			return keyErr("webhook.publish_timeout", "must be above zero and under GitHub's 10s delivery timeout")
		}
		if c.Webhook.BodyTimeout <= 0 {
			return keyErr("webhook.body_timeout", "must be greater than zero")
		}
		if c.Webhook.MaxBodiesAtOnce <= 0 {
			return keyErr("webhook.max_bodies_at_once", "must be greater than zero")
		}
		if len(c.Secrets.WebhookSecrets) == 0 {
			return keyErr("webhook.secret_file", "a webhook secret is required (or set "+EnvWebhookSecret+")")
		}
	}
	if role.runsPolicy() {
		if err := checkListen("policy.listen", c.Policy.Listen); err != nil {
			return err
		}
		if c.Secrets.PolicyAdminToken.IsZero() {
			return keyErr("policy.admin_token_file", "an admin token is required (or set "+EnvPolicyAdminToken+")")
		}
		if strings.TrimSpace(c.Policy.AuthorizationPhrase) == "" {
			return keyErr("policy.authorization_phrase", "must not be empty")
		}
		if c.Policy.GitHubTimeout <= 0 {
			return keyErr("policy.github_timeout", "must be greater than zero")
		}
		if err := checkListenerTLS("policy.tls", c.Policy.TLS); err != nil {
			return err
		}
	}
	if role.runsScaler() {
		if err := checkHTTPURL("policy.url", c.Policy.URL); err != nil {
			return err
		}
	}
	if role != RoleClient {
		if err := checkListen("metrics.listen", c.Metrics.Listen); err != nil {
			return err
		}
	}
	return nil
}

func (c *Config) validateNATS(role Role) error {
	if role == RoleImage { // builds images: never talks to NATS
		return nil
	}
	n := c.NATS
	if n.URL == "" && role != RoleClient { // a client may be pointed elsewhere
		if role != RoleServe {
			return keyErr("nats.url", fmt.Sprintf("required for `ephemera %s` (only `ephemera serve` embeds NATS)", role))
		}
		if n.StoreDir == "" {
			return keyErr("nats.store_dir", "required when NATS is embedded")
		}
		if n.Listen != "" {
			if err := checkListen("nats.listen", n.Listen); err != nil {
				return err
			}
		}
	}
	if n.Replicas != 1 && n.Replicas != 3 && n.Replicas != 5 {
		return keyErr("nats.replicas", fmt.Sprintf("must be 1, 3 or 5, got %d", n.Replicas))
	}
	if n.DuplicateWindow <= 0 {
		return keyErr("nats.duplicate_window", "must be greater than zero")
	}
	return c.validateNATSSecurity(role)
}

func (c *Config) validateGitHub(role Role) error {
	if !role.runsScaler() && !role.runsPolicy() {
		return nil
	}
	g := c.GitHub
	if err := checkHTTPURL("github.api_url", g.APIURL); err != nil {
		return err
	}
	app := g.AppID != 0 || !c.Secrets.GitHubPrivateKey.IsZero()
	token := !c.Secrets.GitHubToken.IsZero()
	switch {
	case app && token:
		return keyErr("github.token_file", "set either a GitHub App (app_id, private_key_file) or token_file, not both")
	case !app && !token:
		return keyErr("github.app_id", "GitHub credentials are required: app_id with private_key_file, or token_file")
	case app && g.AppID <= 0:
		return keyErr("github.app_id", "required with private_key_file")
	case app && c.Secrets.GitHubPrivateKey.IsZero():
		return keyErr("github.private_key_file", "required with app_id (or set "+EnvGitHubPrivateKey+")")
	}
	if g.InstallationID < 0 {
		return keyErr("github.installation_id", "must not be negative")
	}
	if b := g.Budget; b.PointsPerMinute != 0 && b.PointsPerMinute < 5 {
		return keyErr("github.budget.points_per_minute", fmt.Sprintf("must be at least 5 (one write request), got %d; leave it out for GitHub's 900", b.PointsPerMinute))
	}
	if b := g.Budget; b.MaxConcurrent < 0 {
		return keyErr("github.budget.max_concurrent", fmt.Sprintf("must not be negative, got %d; leave it out for GitHub's 100", b.MaxConcurrent))
	}
	if g.Budget.MaxWait < 0 {
		return keyErr("github.budget.max_wait", "must not be negative")
	}
	if role.runsScaler() {
		switch {
		case g.Org == "" && g.Repo == "":
			return keyErr("github.org", "set org or repo: where runners are registered")
		case g.Org != "" && g.Repo != "":
			return keyErr("github.repo", "set org or repo, not both")
		case g.Repo != "":
			if o, r, ok := strings.Cut(g.Repo, "/"); !ok || o == "" || r == "" || strings.Contains(r, "/") {
				return keyErr("github.repo", fmt.Sprintf("must be owner/name, got %q", g.Repo))
			}
		}
		if g.RunnerGroupID <= 0 {
			return keyErr("github.runner_group_id", "must be greater than zero")
		}
	}
	return nil
}

func (c *Config) validateLXD(role Role) error {
	if !role.runsScaler() && role != RoleImage {
		return nil
	}
	l := c.LXD
	if l.URL != "" {
		if l.Socket != "" {
			return keyErr("lxd.url", "set url or socket, not both")
		}
		u, err := url.Parse(l.URL)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			return keyErr("lxd.url", fmt.Sprintf("must be an https:// URL, got %q", l.URL))
		}
		if l.ClientCert == "" {
			return keyErr("lxd.client_cert", "required with lxd.url")
		}
		if l.ClientKey == "" {
			return keyErr("lxd.client_key", "required with lxd.url")
		}
	}
	if l.Project == "" {
		return keyErr("lxd.project", "must not be empty")
	}
	return nil
}

func (c *Config) validateReconcile(role Role) error {
	if !role.runsScaler() {
		return nil
	}
	r := c.Reconcile
	if r.Interval <= 0 {
		return keyErr("reconcile.interval", "must be greater than zero")
	}
	if r.BootstrapTimeout <= 0 {
		return keyErr("reconcile.bootstrap_timeout", "must be greater than zero")
	}
	if r.IdleGrace <= 0 {
		return keyErr("reconcile.idle_grace", "must be greater than zero")
	}
	if r.ProvisionTimeout.D() < 10*time.Second {
		return keyErr("reconcile.provision_timeout", "must be at least 10s")
	}
	if r.MaxRunnerAge != 0 && r.MaxRunnerAge <= r.BootstrapTimeout { // 0: the scaler's default, 24h
		return keyErr("reconcile.max_runner_age", fmt.Sprintf("must be longer than reconcile.bootstrap_timeout (%s), got %s", r.BootstrapTimeout.D(), r.MaxRunnerAge.D()))
	}
	// Idle runners' tokens are extended once less than half is left, by
	// a pass every interval: half a TTL must span a couple of passes.
	if ttl := c.TokenTTL(); ttl < 4*r.Interval.D() {
		return keyErr("policy.token_ttl", fmt.Sprintf("must be at least four reconcile intervals (%s), got %s", 4*r.Interval.D(), ttl))
	}
	return nil
}

func (c *Config) validatePools(role Role) error {
	if role.runsScaler() && len(c.Pools) == 0 {
		return keyErr("pools", "at least one pool is required")
	}
	names := map[string]bool{}
	for i, p := range c.Pools {
		k := func(key string) string { return fmt.Sprintf("pools[%d].%s", i, key) }
		switch {
		case !poolNameRE.MatchString(p.Name) || len(p.Name) > MaxPoolName:
			return keyErr(k("name"), fmt.Sprintf("must be 1-%d characters of a-z, 0-9 and -, not starting or ending with -; got %q", MaxPoolName, p.Name))
		case names[p.Name]:
			return keyErr(k("name"), fmt.Sprintf("pool %q is defined twice", p.Name))
		case len(p.Labels) == 0:
			return keyErr(k("labels"), "at least one label is required")
		case p.InstanceType != InstanceVM && p.InstanceType != InstanceContainer:
			return keyErr(k("instance_type"), fmt.Sprintf("must be %s or %s, got %q", InstanceVM, InstanceContainer, p.InstanceType))
		case p.Image == "":
			return keyErr(k("image"), "required")
		case p.CPU < 1:
			return keyErr(k("cpu"), "must be at least 1")
		case p.Memory < 64<<20:
			return keyErr(k("memory"), "must be at least 64MiB")
		case p.Disk < 1<<30:
			return keyErr(k("disk"), "must be at least 1GiB")
		case p.MinIdle < 0:
			return keyErr(k("min_idle"), "must not be negative")
		case p.Max < 1:
			return keyErr(k("max"), "must be at least 1")
		case p.MinIdle > p.Max:
			return keyErr(k("min_idle"), fmt.Sprintf("must not exceed max (%d)", p.Max))
		case p.Template && p.InstanceType != InstanceContainer:
			return keyErr(k("template"), fmt.Sprintf("applies to instance_type %s only (a virtual machine's disk needs no id shifting; a copy-on-write storage_pool speeds its creation)", InstanceContainer))
		case p.StoragePool != "" && !storagePoolRE.MatchString(p.StoragePool):
			return keyErr(k("storage_pool"), fmt.Sprintf("must be an LXD storage pool name: 1-63 characters of A-Z, a-z, 0-9, _, . and -, starting with a letter or digit; got %q", p.StoragePool))
		}
		if err := validateAutoIdle(i, p); err != nil {
			return err
		}
		names[p.Name] = true
		for j, l := range p.Labels {
			if strings.TrimSpace(l) == "" || strings.ContainsAny(l, ",\n") {
				return keyErr(fmt.Sprintf("pools[%d].labels[%d]", i, j), fmt.Sprintf("not a valid label: %q", l))
			}
		}
		for j, pr := range p.Profiles {
			if strings.TrimSpace(pr) == "" {
				return keyErr(fmt.Sprintf("pools[%d].profiles[%d]", i, j), "must not be empty")
			}
		}
		if p.UserData != "" {
			var m map[string]any
			if err := yaml.Unmarshal([]byte(p.UserData), &m); err != nil || m == nil {
				return keyErr(k("user_data"), "must be a cloud-config YAML mapping")
			}
		}
	}
	return nil
}

func checkListen(key, addr string) error {
	if _, port, err := net.SplitHostPort(addr); err != nil || port == "" {
		return keyErr(key, fmt.Sprintf("must be host:port or :port, got %q", addr))
	}
	return nil
}

func checkHTTPURL(key, raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return keyErr(key, fmt.Sprintf("must be an http:// or https:// URL, got %q", raw))
	}
	return nil
}
