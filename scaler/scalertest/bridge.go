package scalertest

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ephemera-ci/ephemera/internal/config"
	"github.com/ephemera-ci/ephemera/internal/jobs"
)

// Bridge receives the GitHub stand-in's workflow_job webhooks and stores
// them in JetStream as the webhook receiver does (signature checked,
// Nats-Msg-Id = delivery id, pool by labels), so that scaler tests need
// not depend on the webhook package. Answer 503 while Down is set.
type Bridge struct {
	URL    string
	Secret string
	Down   atomic.Bool

	js    jetstream.JetStream
	pools []config.Pool
	srv   *httptest.Server
}

// NewBridge serves a bridge until Close.
func NewBridge(js jetstream.JetStream, pools []config.Pool, secret string) *Bridge {
	b := &Bridge{Secret: secret, js: js, pools: pools}
	b.srv = httptest.NewServer(http.HandlerFunc(b.serve))
	b.URL = b.srv.URL + "/webhook"
	return b
}

// Close stops serving.
func (b *Bridge) Close() { b.srv.Close() }

type payload struct {
	Action      string `json:"action"`
	WorkflowJob struct {
		ID          int64     `json:"id"`
		RunID       int64     `json:"run_id"`
		RunAttempt  int64     `json:"run_attempt"`
		Labels      []string  `json:"labels"`
		RunnerID    int64     `json:"runner_id"`
		RunnerName  string    `json:"runner_name"`
		Conclusion  string    `json:"conclusion"`
		CreatedAt   time.Time `json:"created_at"`
		StartedAt   time.Time `json:"started_at"`
		CompletedAt time.Time `json:"completed_at"`
	} `json:"workflow_job"`
	Repository struct {
		FullName string `json:"full_name"`
		Owner    struct {
			Login string `json:"login"`
		} `json:"owner"`
	} `json:"repository"`
	Installation struct {
		ID int64 `json:"id"`
	} `json:"installation"`
}

func (b *Bridge) serve(w http.ResponseWriter, r *http.Request) {
	if b.Down.Load() {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, "read", http.StatusBadRequest)
		return
	}
	mac := hmac.New(sha256.New, []byte(b.Secret))
	mac.Write(body)
	if !hmac.Equal([]byte(r.Header.Get("X-Hub-Signature-256")), []byte("sha256="+hex.EncodeToString(mac.Sum(nil)))) {
		http.Error(w, "signature", http.StatusUnauthorized)
		return
	}
	var p payload
	if err := json.Unmarshal(body, &p); err != nil {
		http.Error(w, "json", http.StatusBadRequest)
		return
	}
	pool := b.match(p.WorkflowJob.Labels)
	if pool == "" {
		w.WriteHeader(http.StatusAccepted)
		return
	}
	j := p.WorkflowJob
	ev := jobs.Event{
		V: jobs.Version, Delivery: r.Header.Get("X-GitHub-Delivery"), Action: jobs.Action(p.Action),
		JobID: j.ID, RunID: j.RunID, RunAttempt: j.RunAttempt, Repository: p.Repository.FullName,
		Owner: p.Repository.Owner.Login, InstallationID: p.Installation.ID, Labels: j.Labels,
		RunnerID: j.RunnerID, RunnerName: j.RunnerName, Conclusion: j.Conclusion,
		CreatedAt: j.CreatedAt, StartedAt: j.StartedAt, CompletedAt: j.CompletedAt,
		ReceivedAt: time.Now().UTC(), Pool: pool,
	}
	data, _ := json.Marshal(ev)
	msg := &nats.Msg{Subject: jobs.Subject(pool, ev.Action), Data: data, Header: nats.Header{}}
	msg.Header.Set(jetstream.MsgIDHeader, ev.Delivery)
	if _, err := b.js.PublishMsg(r.Context(), msg); err != nil {
		http.Error(w, "store", http.StatusServiceUnavailable)
		return
	}
	w.WriteHeader(http.StatusAccepted)
}

// match returns the first pool whose labels cover the job's.
func (b *Bridge) match(labels []string) string {
	for _, p := range b.pools {
		ok := true
		for _, l := range labels {
			if !slices.ContainsFunc(p.Labels, func(pl string) bool { return strings.EqualFold(pl, l) }) {
				ok = false
				break
			}
		}
		if ok {
			return p.Name
		}
	}
	return ""
}
