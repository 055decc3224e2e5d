package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/ephemera-ci/ephemera/internal/githubfake"
)

// job is githubfake.RunnerJob as the runner reads it.
type job = githubfake.RunnerJob

// session is one runner's conversation with the GitHub stand-in's runner
// API, authenticated with the token of its JIT config.
type session struct {
	jit  githubfake.JITConfig
	http *http.Client
}

func newSession(jit githubfake.JITConfig) *session {
	return &session{jit: jit, http: &http.Client{Timeout: 90 * time.Second}}
}

// jobStarted is what the runner does once it has its job and before the
// job's steps: nil lets the steps run; an error fails the job. What it
// writes to jobLog becomes part of the job's log.
type jobStarted func(ctx context.Context, j job, jobLog io.Writer) error

// runOne comes online, takes one job, calls started, "runs" the job for
// its duration when started passed, and reports the outcome with the
// job's log. waitCtx ends the wait for a job early (a stop signal); once
// the job is taken it runs to its end.
func (s *session) runOne(ctx, waitCtx context.Context, started jobStarted) error {
	logf("runner %s (id %d) starting, version %s; GitHub at %s", s.jit.Name, s.jit.RunnerID, version, s.jit.URL)
	if err := s.retry(waitCtx, "come online", s.online); err != nil {
		return err
	}
	logf("listening for jobs")
	j, err := s.waitForJob(waitCtx)
	if err != nil {
		return err
	}
	logf("took job %d of %s (%s)", j.ID, j.Repository, j.Event)
	var jobLog bytes.Buffer
	fmt.Fprintf(&jobLog, "Current runner version: '%s'\nRunner name: '%s'\n", version, s.jit.Name)
	conclusion := githubfake.ConclusionSuccess
	if err := started(ctx, j, &jobLog); err != nil {
		fmt.Fprintf(&jobLog, "Error: %v\n", err)
		logf("the job fails before its steps: %v", err)
		conclusion = githubfake.ConclusionFailure
	} else {
		fmt.Fprintf(&jobLog, "The job's steps ran (stand-in: %d ms of pretended work)\n", j.DurationMS)
		time.Sleep(time.Duration(j.DurationMS) * time.Millisecond)
	}
	return s.retry(ctx, "report completion", func(ctx context.Context) error {
		return s.complete(ctx, j, conclusion, jobLog.String())
	})
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, time.Now().UTC().Format("15:04:05.000")+" "+format+"\n", args...)
}

func (s *session) url(path string) string { return strings.TrimSuffix(s.jit.URL, "/") + path }

func (s *session) do(ctx context.Context, method, url string, body any) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+s.jit.Token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return s.http.Do(req)
}

// retry runs op up to 30 times a second apart: the stand-in may not be
// reachable the moment the instance boots.
func (s *session) retry(ctx context.Context, what string, op func(context.Context) error) error {
	var err error
	for i := range 30 {
		if err = op(ctx); err == nil || ctx.Err() != nil {
			break
		}
		logf("%s: %v (attempt %d)", what, err, i+1)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

func (s *session) online(ctx context.Context) error {
	resp, err := s.do(ctx, http.MethodPost, s.url(fmt.Sprintf("/_fake/runners/%d/online", s.jit.RunnerID)), nil)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("online: %s", resp.Status)
	}
	return nil
}

// errForgotten: the stand-in no longer knows this runner (removed).
var errForgotten = errors.New("the GitHub stand-in no longer knows this runner")

func (s *session) waitForJob(ctx context.Context) (job, error) {
	for {
		if err := ctx.Err(); err != nil {
			return job{}, fmt.Errorf("wait for a job: %w", err)
		}
		resp, err := s.do(ctx, http.MethodGet, s.url(fmt.Sprintf("/_fake/runners/%d/job?wait=30s", s.jit.RunnerID)), nil)
		if err != nil {
			logf("wait for a job: %v", err)
			pause(ctx)
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
			return j, errForgotten
		default:
			logf("wait for a job: %s", resp.Status)
			pause(ctx)
		}
	}
}

func pause(ctx context.Context) {
	select {
	case <-ctx.Done():
	case <-time.After(time.Second):
	}
}

func (s *session) complete(ctx context.Context, j job, conclusion, jobLog string) error {
	resp, err := s.do(ctx, http.MethodPost, s.url(fmt.Sprintf("/_fake/runners/%d/jobs/%d/complete", s.jit.RunnerID, j.ID)),
		map[string]string{"conclusion": conclusion, "log": jobLog})
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("complete: %s", resp.Status)
	}
	logf("job %d completed: %s", j.ID, conclusion)
	return nil
}
