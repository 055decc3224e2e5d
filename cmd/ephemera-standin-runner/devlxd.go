package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/ephemera-ci/ephemera/internal/githubfake"
)

// The busybox image's mode: it has no cloud-init, bash, curl or jq, so the
// stand-in reads the user-data itself and performs the hook's request.

const (
	devLXDSocket = "/dev/lxd/sock"
	preJobEnv    = "/etc/ephemera/pre-job.env"
)

// settings is what the runner takes from its user-data.
type settings struct {
	jit         githubfake.JITConfig
	policyURL   string
	policyToken string
}

// runFromDevLXD is /sbin/ephemera-run in the busybox image.
func runFromDevLXD(ctx context.Context) error {
	doc, err := userDataFromDevLXD(ctx)
	if err != nil {
		return err
	}
	s, err := parseUserData(doc)
	if err != nil {
		return err
	}
	logf("policy at %s", s.policyURL)
	sess := newSession(s.jit)
	return sess.runOne(ctx, ctx, func(ctx context.Context, j job, jobLog io.Writer) error {
		return preJobCheck(ctx, sess.http, s, j)
	})
}

// userDataFromDevLXD reads cloud-init.user-data from the LXD dev API.
func userDataFromDevLXD(ctx context.Context) (string, error) {
	c := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", devLXDSocket)
		},
	}, Timeout: 10 * time.Second}
	var lastErr error
	for range 50 {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://lxd/1.0/config/cloud-init.user-data", nil)
		resp, err := c.Do(req)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return string(b), nil
			}
			err = fmt.Errorf("dev lxd: %s", resp.Status)
		}
		lastErr = err
		time.Sleep(200 * time.Millisecond)
	}
	return "", lastErr
}

var jitArg = regexp.MustCompile(`--jitconfig ([A-Za-z0-9+/=]+)`)

// parseUserData finds the JIT config in runcmd and the pre-job settings
// in write_files, as cloud-init would lay them out.
func parseUserData(doc string) (settings, error) {
	var ud struct {
		WriteFiles []struct {
			Path    string `yaml:"path"`
			Content string `yaml:"content"`
		} `yaml:"write_files"`
		RunCmd []any `yaml:"runcmd"`
	}
	var s settings
	if err := yaml.Unmarshal([]byte(doc), &ud); err != nil {
		return s, fmt.Errorf("user-data: %w", err)
	}
	for _, f := range ud.WriteFiles {
		if f.Path != preJobEnv {
			continue
		}
		sc := bufio.NewScanner(strings.NewReader(f.Content))
		for sc.Scan() {
			k, v, _ := strings.Cut(sc.Text(), "=")
			switch k {
			case "EPHEMERA_POLICY_URL":
				s.policyURL = v
			case "EPHEMERA_POLICY_TOKEN":
				s.policyToken = v
			}
		}
	}
	for _, c := range ud.RunCmd {
		if m := jitArg.FindStringSubmatch(fmt.Sprint(c)); m != nil {
			jit, err := githubfake.DecodeJITConfig(m[1])
			if err != nil {
				return s, err
			}
			s.jit = jit
		}
	}
	switch {
	case s.jit.Token == "":
		return s, errors.New("user-data: no run.sh --jitconfig in runcmd")
	case s.policyURL == "" || s.policyToken == "":
		return s, fmt.Errorf("user-data: no policy URL and token in %s", preJobEnv)
	}
	return s, nil
}

// preJobCheck does what the pre-job hook does: POST the job's details to
// the policy service with the one-time token; anything but 204 fails.
func preJobCheck(ctx context.Context, c *http.Client, s settings, j job) error {
	event, body := checkRequest(j)
	sess := &session{jit: githubfake.JITConfig{Token: s.policyToken}, http: c}
	resp, err := sess.do(ctx, http.MethodPost, strings.TrimSuffix(s.policyURL, "/")+"/"+event+"/check-run", body)
	if err != nil {
		return fmt.Errorf("the policy service could not be reached: %w", err)
	}
	defer resp.Body.Close()
	reason, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	switch {
	case resp.StatusCode == http.StatusNoContent:
		return nil
	case resp.StatusCode == http.StatusForbidden:
		return fmt.Errorf("the repository is not compliant: %s", strings.TrimSpace(string(reason)))
	default:
		return fmt.Errorf("the policy service failed (%s): %s", resp.Status, strings.TrimSpace(string(reason)))
	}
}

// checkRequest picks the endpoint and body the hook would send.
func checkRequest(j job) (event string, body map[string]string) {
	switch j.Event {
	case "pull_request", "pull_request_target":
		return "pull_request", map[string]string{
			"repository_name":        j.Repository,
			"source_repository_name": j.HeadRepository,
			"target_branch_name":     j.BaseBranch,
			"source_branch_name":     j.HeadBranch,
			"commit_sha":             j.SHA,
		}
	case "push", "workflow_dispatch", "schedule":
		return j.Event, map[string]string{"repository_name": j.Repository}
	default:
		return "default", map[string]string{"repository_name": j.Repository}
	}
}
