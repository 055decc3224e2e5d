// Command ephemera-standin-runner plays the GitHub Actions runner inside an
// LXD instance, for ephemera's end-to-end tests and demo. It is test and
// demo code, not part of the ephemera binary: `make` bakes it, statically
// linked, into the ephemera-e2e image as /sbin/ephemera-run, which the
// image's init runs at boot and follows with a power-off.
//
// It reads the instance's cloud-init user-data through /dev/lxd/sock — the
// same user-data a real runner VM gets — and from it the JIT config (the
// argument of run.sh --jitconfig) and the pre-job hook's settings (the
// policy URL and the one-time token). Then, like the real runner, it comes
// online with the GitHub stand-in, takes the job the stand-in's broker
// hands it, runs the pre-job check against the policy service (a refusal
// fails the job before it "runs"), "runs" the job for its duration,
// reports completion and exits.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/ephemera-ci/ephemera/internal/githubfake"
)

const (
	devLXDSocket = "/dev/lxd/sock"
	preJobEnv    = "/etc/ephemera/pre-job.env"
)

func main() {
	ctx := context.Background()
	if err := run(ctx, userDataFromDevLXD); err != nil {
		fmt.Fprintln(os.Stderr, "ephemera-standin-runner:", err)
		os.Exit(1)
	}
}

// settings is what the runner takes from its user-data.
type settings struct {
	jit         githubfake.JITConfig
	policyURL   string
	policyToken string
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

func run(ctx context.Context, userData func(context.Context) (string, error)) error {
	doc, err := userData(ctx)
	if err != nil {
		return err
	}
	s, err := parseUserData(doc)
	if err != nil {
		return err
	}
	r := &runner{s: s, http: &http.Client{Timeout: 90 * time.Second}}
	log("runner %s (id %d) starting; GitHub at %s, policy at %s", s.jit.Name, s.jit.RunnerID, s.jit.URL, s.policyURL)
	if err := r.retry(ctx, "come online", r.online); err != nil {
		return err
	}
	job, err := r.waitForJob(ctx)
	if err != nil {
		return err
	}
	log("took job %d of %s (%s)", job.ID, job.Repository, job.Event)
	conclusion := "success"
	if err := r.preJobCheck(ctx, job); err != nil {
		log("pre-job check failed, the job does not run: %v", err)
		conclusion = "failure"
	} else {
		time.Sleep(time.Duration(job.DurationMS) * time.Millisecond)
	}
	return r.retry(ctx, "report completion", func(ctx context.Context) error { return r.complete(ctx, job, conclusion) })
}

func log(format string, args ...any) {
	fmt.Fprintf(os.Stderr, time.Now().UTC().Format(time.TimeOnly)+" "+format+"\n", args...)
}

type runner struct {
	s    settings
	http *http.Client
}

func (r *runner) url(path string) string { return strings.TrimSuffix(r.s.jit.URL, "/") + path }

func (r *runner) do(ctx context.Context, method, url, token string, body any) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return r.http.Do(req)
}

func (r *runner) retry(ctx context.Context, what string, op func(context.Context) error) error {
	var err error
	for i := range 30 {
		if err = op(ctx); err == nil {
			return nil
		}
		log("%s: %v (attempt %d)", what, err, i+1)
		time.Sleep(time.Second)
	}
	return fmt.Errorf("%s: %w", what, err)
}

func (r *runner) online(ctx context.Context) error {
	resp, err := r.do(ctx, http.MethodPost, r.url(fmt.Sprintf("/_fake/runners/%d/online", r.s.jit.RunnerID)), r.s.jit.Token, nil)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("online: %s", resp.Status)
	}
	return nil
}

// job is githubfake.RunnerJob as the runner reads it.
type job = githubfake.RunnerJob

func (r *runner) waitForJob(ctx context.Context) (job, error) {
	for {
		resp, err := r.do(ctx, http.MethodGet, r.url(fmt.Sprintf("/_fake/runners/%d/job?wait=30s", r.s.jit.RunnerID)), r.s.jit.Token, nil)
		if err != nil {
			log("wait for a job: %v", err)
			time.Sleep(time.Second)
			continue
		}
		var j job
		err = json.NewDecoder(resp.Body).Decode(&j)
		resp.Body.Close()
		switch {
		case resp.StatusCode == http.StatusOK && err == nil:
			return j, nil
		case resp.StatusCode == http.StatusNoContent:
		case resp.StatusCode == http.StatusUnauthorized:
			return j, errors.New("the GitHub stand-in no longer knows this runner")
		default:
			log("wait for a job: %s", resp.Status)
			time.Sleep(time.Second)
		}
	}
}

func (r *runner) complete(ctx context.Context, j job, conclusion string) error {
	resp, err := r.do(ctx, http.MethodPost, r.url(fmt.Sprintf("/_fake/runners/%d/jobs/%d/complete", r.s.jit.RunnerID, j.ID)), r.s.jit.Token, map[string]string{"conclusion": conclusion})
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("complete: %s", resp.Status)
	}
	log("job %d completed: %s", j.ID, conclusion)
	return nil
}

// preJobCheck does what the pre-job hook does: POST the job's details to
// the policy service with the one-time token; anything but 204 fails.
func (r *runner) preJobCheck(ctx context.Context, j job) error {
	event, body := checkRequest(j)
	resp, err := r.do(ctx, http.MethodPost, strings.TrimSuffix(r.s.policyURL, "/")+"/"+event+"/check-run", r.s.policyToken, body)
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
