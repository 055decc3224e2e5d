package githubfake_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-github/v60/github"

	"github.com/ephemera-ci/ephemera/internal/githubfake"
)

func start(t *testing.T) (*githubfake.Server, *github.Client) {
	t.Helper()
	s, err := githubfake.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	c := github.NewClient(nil).WithAuthToken("test-token")
	u, _ := url.Parse(s.URL)
	c.BaseURL = u
	return s, c
}

// hooks records the webhooks it receives.
type hooks struct {
	mu   sync.Mutex
	got  []hook
	srv  *httptest.Server
	code int
}

type hook struct {
	Event, Delivery, Action string
	JobID                   int64
	RunnerName              string
	Conclusion              string
	SignatureOK             bool
	Installation            int64
	Repo                    string
}

func receive(t *testing.T, s *githubfake.Server, secret string) *hooks {
	t.Helper()
	h := &hooks{code: http.StatusAccepted}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mac := hmac.New(sha256.New, []byte(secret))
		mac.Write(body)
		var p struct {
			Action      string `json:"action"`
			WorkflowJob struct {
				ID         int64  `json:"id"`
				RunnerName string `json:"runner_name"`
				Conclusion string `json:"conclusion"`
			} `json:"workflow_job"`
			Repository struct {
				FullName string `json:"full_name"`
			} `json:"repository"`
			Installation struct {
				ID int64 `json:"id"`
			} `json:"installation"`
		}
		_ = json.Unmarshal(body, &p)
		h.mu.Lock()
		h.got = append(h.got, hook{
			Event: r.Header.Get("X-GitHub-Event"), Delivery: r.Header.Get("X-GitHub-Delivery"), Action: p.Action,
			JobID: p.WorkflowJob.ID, RunnerName: p.WorkflowJob.RunnerName, Conclusion: p.WorkflowJob.Conclusion,
			SignatureOK:  r.Header.Get("X-Hub-Signature-256") == "sha256="+hex.EncodeToString(mac.Sum(nil)),
			Installation: p.Installation.ID, Repo: p.Repository.FullName,
		})
		code := h.code
		h.mu.Unlock()
		w.WriteHeader(code)
	}))
	t.Cleanup(h.srv.Close)
	s.SetWebhook(githubfake.WebhookConfig{URL: h.srv.URL, Secret: secret})
	return h
}

func (h *hooks) all() []hook {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.got)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func jit(t *testing.T, c *github.Client, name string, labels ...string) (*github.JITRunnerConfig, *github.Response, error) {
	t.Helper()
	return c.Actions.GenerateOrgJITConfig(context.Background(), "acme", &github.GenerateJITConfigRequest{Name: name, RunnerGroupID: 1, Labels: labels})
}

func TestRequestsWithoutCredentialsAre401(t *testing.T) {
	s, _ := start(t)
	resp, err := http.Get(s.URL + "orgs/acme/actions/runners")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("status %d, want 401", resp.StatusCode)
	}
}

func TestAnInstallationTokenIsIssued(t *testing.T) {
	_, c := start(t)
	tok, _, err := c.Apps.CreateInstallationToken(context.Background(), 42, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(tok.GetToken(), "ghs_") || tok.GetExpiresAt().Before(time.Now()) {
		t.Errorf("token %q expiring %v", tok.GetToken(), tok.GetExpiresAt())
	}
}

func TestJITRegistrationReturnsTheRunnerAndItsConfigAndRefusesADuplicateName(t *testing.T) {
	s, c := start(t)
	cfg, _, err := jit(t, c, "eph-a-1", "self-hosted", "linux")
	if err != nil {
		t.Fatal(err)
	}
	dec, err := githubfake.DecodeJITConfig(cfg.GetEncodedJITConfig())
	if err != nil {
		t.Fatal(err)
	}
	if dec.Name != "eph-a-1" || dec.RunnerID != cfg.GetRunner().GetID() || dec.URL != s.URL || dec.Token == "" {
		t.Errorf("decoded config %+v does not describe runner %d", dec, cfg.GetRunner().GetID())
	}
	_, resp, err := jit(t, c, "eph-a-1", "self-hosted")
	if err == nil || resp.StatusCode != http.StatusConflict {
		t.Errorf("duplicate name: status %v, want 409", resp.StatusCode)
	}
	// The same name in a repository is another scope.
	if _, _, err := c.Actions.GenerateRepoJITConfig(context.Background(), "acme", "app", &github.GenerateJITConfigRequest{Name: "eph-a-1", Labels: []string{"x"}}); err != nil {
		t.Errorf("repo-level registration under an org runner's name: %v", err)
	}
}

func TestRunnersAreListedPageByPage(t *testing.T) {
	_, c := start(t)
	for _, n := range []string{"r1", "r2", "r3", "r4", "r5"} {
		if _, _, err := jit(t, c, n, "self-hosted"); err != nil {
			t.Fatal(err)
		}
	}
	var names []string
	opts := &github.ListOptions{PerPage: 2}
	pages := 0
	for {
		rs, resp, err := c.Actions.ListOrganizationRunners(context.Background(), "acme", opts)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		if rs.TotalCount != 5 {
			t.Errorf("total_count %d, want 5", rs.TotalCount)
		}
		for _, r := range rs.Runners {
			names = append(names, r.GetName())
		}
		if resp.NextPage == 0 {
			break
		}
		opts.Page = resp.NextPage
	}
	if d := cmp.Diff(names, []string{"r1", "r2", "r3", "r4", "r5"}); d != "" || pages != 3 {
		t.Errorf("pages %d; names (-got +want):\n%s", pages, d)
	}
}

func TestTheBrokerHandsAJobToAnyIdleRunnerWhoseLabelsCoverItAndABusyRunnerCannotBeRemoved(t *testing.T) {
	s, c := start(t)
	h := receive(t, s, "sec")
	for name, labels := range map[string][]string{"narrow": {"self-hosted"}, "wide": {"Self-Hosted", "Linux", "X64"}} {
		if _, _, err := jit(t, c, name, labels...); err != nil {
			t.Fatal(err)
		}
		if err := s.RunnerOnline(name); err != nil {
			t.Fatal(err)
		}
	}
	id := s.QueueJob(githubfake.JobSpec{Labels: []string{"self-hosted", "linux"}, Repo: "acme/app", InstallationID: 7})
	j, _ := s.GetJob(id)
	if j.Status != githubfake.JobInProgress || j.RunnerName != "wide" {
		t.Fatalf("job %s on %q, want in_progress on wide (labels match case-insensitively)", j.Status, j.RunnerName)
	}
	wide, _ := s.RunnerByName("wide")
	resp, err := c.Actions.RemoveOrganizationRunner(context.Background(), "acme", wide.ID)
	if err == nil || resp.StatusCode != http.StatusUnprocessableEntity {
		t.Errorf("removing a busy runner: %v, want 422", resp.StatusCode)
	}
	if err := s.CompleteJob(id, githubfake.ConclusionSuccess); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.RunnerByName("wide"); ok {
		t.Error("an ephemeral runner outlived its job")
	}
	gj, _, err := c.Actions.GetWorkflowJobByID(context.Background(), "acme", "app", id)
	if err != nil || gj.GetStatus() != "completed" || gj.GetConclusion() != "success" || gj.GetRunnerName() != "wide" {
		t.Errorf("job via API: %v %v %v, %v", gj.GetStatus(), gj.GetConclusion(), gj.GetRunnerName(), err)
	}
	waitFor(t, "three webhooks", func() bool { return len(h.all()) == 3 })
	var got []string
	for _, x := range h.all() {
		if !x.SignatureOK || x.Event != "workflow_job" || x.Delivery == "" || x.Installation != 7 || x.Repo != "acme/app" || x.JobID != id {
			t.Errorf("webhook %+v: wrong headers, signature or payload", x)
		}
		got = append(got, x.Action)
	}
	slices.Sort(got)
	if d := cmp.Diff(got, []string{"completed", "in_progress", "queued"}); d != "" {
		t.Errorf("actions (-got +want):\n%s", d)
	}
}

func TestAJobCancelledBeforeItStartsNeverGetsARunner(t *testing.T) {
	s, c := start(t)
	id := s.QueueJob(githubfake.JobSpec{Labels: []string{"gpu"}})
	if err := s.CancelJob(id); err != nil {
		t.Fatal(err)
	}
	if _, _, err := jit(t, c, "gpu-runner", "gpu"); err != nil {
		t.Fatal(err)
	}
	_ = s.RunnerOnline("gpu-runner")
	j, _ := s.GetJob(id)
	if j.Status != githubfake.JobCompleted || j.Conclusion != githubfake.ConclusionCancelled || j.RunnerName != "" {
		t.Errorf("job %s/%s on %q; want completed/cancelled on no runner", j.Status, j.Conclusion, j.RunnerName)
	}
}

func TestDroppedDeliveriesAreRecordedFailedAndCanBeRedeliveredThroughTheAPI(t *testing.T) {
	s, c := start(t)
	h := receive(t, s, "sec")
	s.SetKnobs(githubfake.Knobs{DropQueued: 1})
	id := s.QueueJob(githubfake.JobSpec{Labels: []string{"x"}})
	s.QueueJob(githubfake.JobSpec{Labels: []string{"x"}})
	waitFor(t, "the second job's webhook", func() bool { return len(h.all()) == 1 })
	// The receiver has it; the sender records the answer just after.
	waitFor(t, "both deliveries recorded", func() bool {
		d := s.Deliveries()
		return len(d) == 2 && !d[0].Pending && !d[1].Pending
	})

	ds, _, err := c.Apps.ListHookDeliveries(context.Background(), &github.ListCursorOptions{PerPage: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 1 || ds[0].GetStatusCode() != http.StatusAccepted {
		t.Fatalf("newest delivery first: %v", ds)
	}
	// Page to the older, failed one.
	_, resp, _ := c.Apps.ListHookDeliveries(context.Background(), &github.ListCursorOptions{PerPage: 1})
	older, _, err := c.Apps.ListHookDeliveries(context.Background(), &github.ListCursorOptions{PerPage: 1, Cursor: resp.Cursor})
	if err != nil || len(older) != 1 {
		t.Fatalf("older page: %v, %v", older, err)
	}
	failed := older[0]
	if failed.GetStatusCode() != 0 || failed.GetStatus() == "OK" {
		t.Fatalf("dropped delivery recorded as %d %q, want a failure", failed.GetStatusCode(), failed.GetStatus())
	}
	if _, _, err := c.Apps.RedeliverHookDelivery(context.Background(), failed.GetID()); err != nil {
		if _, ok := err.(*github.AcceptedError); !ok {
			t.Fatal(err)
		}
	}
	waitFor(t, "the redelivery", func() bool { return len(h.all()) == 2 })
	got := h.all()[1]
	if got.Delivery != failed.GetGUID() || got.JobID != id {
		t.Errorf("redelivery %+v: want GUID %s of job %d", got, failed.GetGUID(), id)
	}
	var last githubfake.Delivery
	waitFor(t, "the redelivery's record", func() bool {
		d := s.Deliveries()
		last = d[len(d)-1]
		return !last.Pending
	})
	if !last.Redelivery || !last.OK() {
		t.Errorf("redelivery recorded as %+v", last)
	}
}

func TestDuplicateDeliveriesKeepOrRenewTheDeliveryID(t *testing.T) {
	s, _ := start(t)
	h := receive(t, s, "sec")
	s.SetKnobs(githubfake.Knobs{DuplicateSameID: true, DuplicateNewID: true})
	id := s.QueueJob(githubfake.JobSpec{Labels: []string{"x"}})
	waitFor(t, "three queued deliveries", func() bool { return len(h.all()) == 3 })
	ids := map[string]int{}
	for _, x := range h.all() {
		if x.JobID != id || x.Action != "queued" {
			t.Errorf("unexpected delivery %+v", x)
		}
		ids[x.Delivery]++
	}
	if len(ids) != 2 {
		t.Errorf("delivery ids %v: want one sent twice and one new", ids)
	}
}

func TestQueuedDeliveriesCanArriveAfterLaterOnes(t *testing.T) {
	s, c := start(t)
	h := receive(t, s, "sec")
	s.SetKnobs(githubfake.Knobs{QueuedDelay: 200 * time.Millisecond})
	if _, _, err := jit(t, c, "r", "x"); err != nil {
		t.Fatal(err)
	}
	_ = s.RunnerOnline("r")
	s.QueueJob(githubfake.JobSpec{Labels: []string{"x"}})
	waitFor(t, "two deliveries", func() bool { return len(h.all()) == 2 })
	if got := h.all(); got[0].Action != "in_progress" || got[1].Action != "queued" {
		t.Errorf("order %s, %s; want in_progress before queued", got[0].Action, got[1].Action)
	}
}

func TestInProgressDeliveriesCanBeHeldWhileTheRunnerListShowsTheRunnerBusy(t *testing.T) {
	s, c := start(t)
	h := receive(t, s, "sec")
	s.SetKnobs(githubfake.Knobs{HoldInProgress: true})
	if _, _, err := jit(t, c, "r", "x"); err != nil {
		t.Fatal(err)
	}
	_ = s.RunnerOnline("r")
	id := s.QueueJob(githubfake.JobSpec{Labels: []string{"x"}})
	if rn, ok := s.RunnerByName("r"); !ok || !rn.Busy {
		t.Fatalf("runner %+v: want it listed busy", rn)
	}
	if err := s.CompleteJob(id, "success"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the queued and completed deliveries", func() bool { return len(h.all()) == 2 })
	got := map[string]bool{}
	for _, x := range h.all() {
		got[x.Action] = true
	}
	if !got["queued"] || !got["completed"] {
		t.Errorf("deliveries %v; want queued and completed while in_progress is held", got)
	}
	for _, d := range s.Deliveries() {
		if d.Action == "in_progress" && !d.Pending {
			t.Errorf("held in_progress delivery %+v attempted", d)
		}
	}
	s.SetKnobs(githubfake.Knobs{})
	waitFor(t, "the held in_progress delivery", func() bool { return len(h.all()) == 3 })
	if last := h.all()[2]; last.Action != "in_progress" || last.JobID != id {
		t.Errorf("third delivery %s of job %d, want in_progress of %d", last.Action, last.JobID, id)
	}
}

func TestAStandInRunnerDrivesItsJobOverHTTP(t *testing.T) {
	s, c := start(t)
	cfg, _, err := jit(t, c, "lxd-runner", "self-hosted", "small")
	if err != nil {
		t.Fatal(err)
	}
	dec, _ := githubfake.DecodeJITConfig(cfg.GetEncodedJITConfig())
	call := func(method, path, token string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(method, dec.URL+strings.TrimPrefix(path, "/"), strings.NewReader(`{"conclusion":"success"}`))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	base := "/_fake/runners/" + itoa(dec.RunnerID)
	if r := call(http.MethodPost, base+"/online", "wrong"); r.StatusCode != http.StatusUnauthorized {
		t.Errorf("wrong token: %d, want 401", r.StatusCode)
	}
	if r := call(http.MethodPost, base+"/online", dec.Token); r.StatusCode != http.StatusNoContent {
		t.Fatalf("online: %d", r.StatusCode)
	}
	id := s.QueueJob(githubfake.JobSpec{Labels: []string{"small"}, Duration: time.Second})
	req, _ := http.NewRequest(http.MethodGet, dec.URL+strings.TrimPrefix(base, "/")+"/job?wait=2s", nil)
	req.Header.Set("Authorization", "Bearer "+dec.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var rj githubfake.RunnerJob
	_ = json.NewDecoder(resp.Body).Decode(&rj)
	resp.Body.Close()
	if rj.ID != id || rj.DurationMS != 1000 {
		t.Fatalf("job %+v, want %d lasting 1000ms", rj, id)
	}
	if r := call(http.MethodPost, base+"/jobs/"+itoa(id)+"/complete", dec.Token); r.StatusCode != http.StatusNoContent {
		t.Fatalf("complete: %d", r.StatusCode)
	}
	if j, _ := s.GetJob(id); j.Status != githubfake.JobCompleted || j.Conclusion != "success" {
		t.Errorf("job %s/%s", j.Status, j.Conclusion)
	}
	if _, ok := s.RunnerByName("lxd-runner"); ok {
		t.Error("the ephemeral runner is still registered after its job")
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
