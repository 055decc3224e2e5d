package lxdprov

import (
	"fmt"
	"net/url"
	"regexp"

	"github.com/ephemera-ci/ephemera/internal/config"
	"github.com/ephemera-ci/ephemera/scaler"
)

// What the values that reach LXD's config and the instance's user-data may
// look like. Everything rendered into a shell command or an env file is one
// of these, so no value can carry a quote, a `$`, a space or a newline.
var (
	// instanceName: an LXD instance name that is also a GitHub runner
	// name and a hostname.
	instanceName = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)
	// poolName: as config validates it.
	poolName = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,28}[a-z0-9])?$`)
	// jitConfig: GitHub's encoded_jit_config is base64.
	jitConfig = regexp.MustCompile(`^[A-Za-z0-9+/=]+$`)
	// policyToken: the policy service's one-time tokens are 64 hex characters.
	policyToken = regexp.MustCompile(`^[0-9a-f]{64}$`)
	// policyURL: scheme, host (name, IPv4 or [IPv6]), port and a plain path;
	// no user info, query or fragment.
	policyURL = regexp.MustCompile(`^https?://([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?(/[A-Za-z0-9._~/-]*)?$`)
)

// checkSpec refuses a spec whose values could not be placed safely in the
// instance's config and user-data. Its errors wrap scaler.ErrMisconfigured:
// the same spec will never succeed. The secrets are never echoed.
func checkSpec(spec scaler.InstanceSpec) error {
	if !instanceName.MatchString(spec.Name) || spec.Name[len(spec.Name)-1] == '-' {
		return fmt.Errorf("instance name %q: want 1-63 characters of [a-z0-9-], starting with a letter and not ending with '-': %w", spec.Name, scaler.ErrMisconfigured)
	}
	if spec.JobID < 0 {
		return fmt.Errorf("instance %s: negative job id %d: %w", spec.Name, spec.JobID, scaler.ErrMisconfigured)
	}
	if !jitConfig.MatchString(spec.JITConfig) {
		return fmt.Errorf("instance %s: the JIT config is empty or not base64 (%d characters): %w", spec.Name, len(spec.JITConfig), scaler.ErrMisconfigured)
	}
	if !policyToken.MatchString(spec.PolicyToken) {
		return fmt.Errorf("instance %s: the policy token is not 64 lower-case hex characters: %w", spec.Name, scaler.ErrMisconfigured)
	}
	return nil
}

// checkPolicyURL refuses a policy URL that could not be written safely into
// the instance's pre-job env file.
func checkPolicyURL(u string) error {
	if u == "" {
		return fmt.Errorf("PolicyURL (policy.url) is required")
	}
	if !policyURL.MatchString(u) {
		return fmt.Errorf("policy.url %q: want http(s)://host[:port][/path] with a path of [A-Za-z0-9._~/-] only", u)
	}
	if _, err := url.Parse(u); err != nil {
		return fmt.Errorf("policy.url %q: %w", u, err)
	}
	return nil
}

// checkPool refuses a pool whose name or type LXD or the user-data could
// not take as they are.
func checkPool(pc config.Pool) error {
	if !poolName.MatchString(pc.Name) {
		return fmt.Errorf("name %q: want 1-30 characters of [a-z0-9-], starting and ending with a letter or digit: %w", pc.Name, scaler.ErrMisconfigured)
	}
	switch pc.InstanceType {
	case config.InstanceVM, config.InstanceContainer:
	default:
		return fmt.Errorf("instance_type %q: want %s or %s: %w", pc.InstanceType, config.InstanceVM, config.InstanceContainer, scaler.ErrMisconfigured)
	}
	if pc.CPU < 0 || pc.Memory < 0 || pc.Disk < 0 {
		return fmt.Errorf("cpu, memory and disk must not be negative: %w", scaler.ErrMisconfigured)
	}
	return nil
}
