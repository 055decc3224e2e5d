package config

import (
	"fmt"
	"os"
	"reflect"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Role says which component(s) a process runs; it decides which keys and
// secrets are required.
type Role string

// Roles, one per subcommand that runs something.
const (
	RoleServe   Role = "serve"   // everything, NATS embedded unless nats.url is set
	RoleWebhook Role = "webhook" // the webhook receiver alone
	RoleScaler  Role = "scaler"  // the scaler and reconciler alone
	RolePolicy  Role = "policy"  // the policy service alone
	RoleClient  Role = "client"  // `ephemera status`: reads shared state only
	RoleImage   Role = "image"   // `ephemera image`: talks to LXD only
)

func (r Role) runsWebhook() bool { return r == RoleServe || r == RoleWebhook }
func (r Role) runsScaler() bool  { return r == RoleServe || r == RoleScaler }
func (r Role) runsPolicy() bool  { return r == RoleServe || r == RolePolicy }

// Load reads the file at path, fills defaults, reads the secrets role needs
// and validates the result for role. Every error is a *KeyError (or wraps
// one) whose message names the offending key.
func Load(path string, role Role) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(b, role)
}

// Parse is Load for a document already in memory.
func Parse(doc []byte, role Role) (*Config, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(doc, &root); err != nil {
		return nil, fmt.Errorf("config is not valid YAML: %s", oneLine(err.Error()))
	}
	c := Default()
	if err := decode(&root, reflect.ValueOf(&c).Elem(), ""); err != nil {
		return nil, err
	}
	for i := range c.Pools {
		defaultPool(&c.Pools[i])
	}
	if c.GitHub.APIURL != "" && !strings.HasSuffix(c.GitHub.APIURL, "/") {
		c.GitHub.APIURL += "/"
	}
	if err := c.loadSecrets(role); err != nil {
		return nil, err
	}
	if err := c.Validate(role); err != nil {
		return nil, err
	}
	return &c, nil
}

func (c *Config) loadSecrets(role Role) error {
	var err error
	if role.runsWebhook() {
		if c.Secrets.WebhookSecrets, err = loadWebhookSecrets(c.Webhook.SecretFile); err != nil {
			return err
		}
	}
	if role.runsPolicy() {
		if c.Secrets.PolicyAdminToken, err = loadSecret("policy.admin_token_file", c.Policy.AdminTokenFile, EnvPolicyAdminToken); err != nil {
			return err
		}
		if !c.Secrets.PolicyAdminToken.IsZero() {
			if err := checkLength("policy.admin_token_file", source(c.Policy.AdminTokenFile, EnvPolicyAdminToken), c.Secrets.PolicyAdminToken); err != nil {
				return err
			}
		}
	}
	if role.runsScaler() || role.runsPolicy() {
		if c.Secrets.GitHubPrivateKey, err = loadSecret("github.private_key_file", c.GitHub.PrivateKeyFile, EnvGitHubPrivateKey); err != nil {
			return err
		}
		if c.Secrets.GitHubToken, err = loadSecret("github.token_file", c.GitHub.TokenFile, EnvGitHubToken); err != nil {
			return err
		}
	}
	if role.runsScaler() {
		if c.Secrets.StatusToken, err = loadSecret("status.token_file", c.Status.TokenFile, EnvStatusToken); err != nil {
			return err
		}
	}
	return c.loadNATSSecrets()
}

// loadWebhookSecrets reads every accepted webhook secret: the environment
// variable's one, or the file's, one per line.
func loadWebhookSecrets(file string) ([]Secret, error) {
	s, err := loadSecret("webhook.secret_file", file, EnvWebhookSecret)
	if err != nil || s.IsZero() {
		return nil, err
	}
	var out []Secret
	for i, line := range strings.Split(s.Reveal(), "\n") {
		if line = strings.TrimSpace(line); line != "" {
			what := source(file, EnvWebhookSecret)
			if !strings.HasSuffix(what, EnvWebhookSecret) {
				what = fmt.Sprintf("%s, line %d,", what, i+1)
			}
			if err := checkLength("webhook.secret_file", what, Secret{v: line}); err != nil {
				return nil, err
			}
			out = append(out, Secret{v: line})
		}
	}
	return out, nil
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
