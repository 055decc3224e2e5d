package githubfake

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	mrand "math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"
)

// WebhookConfig is where the stand-in sends workflow_job webhooks, as the
// GitHub App's webhook settings say.
type WebhookConfig struct {
	URL    string
	Secret string
}

// Knobs make webhook deliveries misbehave the ways GitHub's do. They apply
// to deliveries emitted after SetKnobs.
type Knobs struct {
	// DropQueued makes the next n queued deliveries fail as if ephemera
	// were unreachable: recorded as failed, never sent, redeliverable.
	DropQueued int
	// DropQueuedProbability drops each queued delivery with this chance.
	DropQueuedProbability float64
	// DuplicateSameID sends every queued delivery twice with the same
	// X-GitHub-Delivery, as a redelivery would.
	DuplicateSameID bool
	// DuplicateNewID also sends every queued delivery again under a new
	// delivery id: the same job queued twice.
	DuplicateNewID bool
	// QueuedDelay holds queued deliveries back, so that a job's
	// in_progress (or completed) delivery can overtake its queued one.
	QueuedDelay time.Duration
	// HoldInProgress keeps in_progress deliveries back until SetKnobs
	// turns it off, so that the runner list shows a runner busy before
	// its job's in_progress delivery arrives (and a completed delivery
	// can overtake it). Turned off, the held ones are sent, oldest first.
	HoldInProgress bool
}

// Delivery is one webhook delivery attempt as GitHub records it.
type Delivery struct {
	ID             int64
	GUID           string
	Event          string
	Action         string
	JobID          int64
	InstallationID int64
	Redelivery     bool
	StatusCode     int    // 0 when no answer came
	Status         string // "OK" or why it failed
	DeliveredAt    time.Time
	Pending        bool // not attempted yet
}

// OK reports whether the endpoint answered 2xx.
func (d Delivery) OK() bool { return d.StatusCode >= 200 && d.StatusCode < 300 }

type delivery struct {
	Delivery
	payload []byte
}

type hookState struct {
	mu        sync.Mutex
	cfg       WebhookConfig
	knobs     Knobs
	held      []*delivery // in_progress deliveries kept back by HoldInProgress
	nextID    int64
	all       []*delivery // by id, ascending
	byID      map[int64]*delivery
	work      chan *delivery
	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	client    *http.Client
	startOnce sync.Once
}

const hookSenders = 8

func newHookState() *hookState {
	ctx, cancel := context.WithCancel(context.Background())
	return &hookState{
		nextID: 9000, byID: map[int64]*delivery{},
		work: make(chan *delivery, 1<<16), ctx: ctx, cancel: cancel,
		client: &http.Client{Timeout: 10 * time.Second},
	}
}

func (h *hookState) start() {
	h.startOnce.Do(func() {
		for range hookSenders {
			h.wg.Add(1)
			go func() {
				defer h.wg.Done()
				for {
					select {
					case <-h.ctx.Done():
						return
					case d := <-h.work:
						h.send(d)
					}
				}
			}()
		}
	})
}

func (h *hookState) close() {
	h.cancel()
	h.wg.Wait()
}

// SetWebhook sets where webhooks go. Without a URL, deliveries fail (and
// can be redelivered later).
func (s *Server) SetWebhook(cfg WebhookConfig) {
	h := s.actions.hooks
	h.mu.Lock()
	h.cfg = cfg
	h.mu.Unlock()
}

// SetKnobs replaces the delivery knobs.
func (s *Server) SetKnobs(k Knobs) {
	h := s.actions.hooks
	h.mu.Lock()
	defer h.mu.Unlock()
	h.knobs = k
	if !k.HoldInProgress {
		for _, d := range h.held {
			h.queueLocked(d, 0)
		}
		h.held = nil
	}
}

// Deliveries returns every delivery attempt, oldest first.
func (s *Server) Deliveries() []Delivery {
	h := s.actions.hooks
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]Delivery, len(h.all))
	for i, d := range h.all {
		out[i] = d.Delivery
	}
	return out
}

// Redeliver sends delivery id again under the same GUID, as the UI's
// "Redeliver" button does.
func (s *Server) Redeliver(id int64) (Delivery, error) {
	h := s.actions.hooks
	h.mu.Lock()
	defer h.mu.Unlock()
	d := h.byID[id]
	if d == nil {
		return Delivery{}, fmt.Errorf("githubfake: no delivery %d", id)
	}
	nd := h.recordLocked(d.GUID, d.Action, d.JobID, d.InstallationID, d.payload, true)
	h.queueLocked(nd, 0)
	return nd.Delivery, nil
}

type hookPayload struct {
	Action      string `json:"action"`
	WorkflowJob apiJob `json:"workflow_job"`
	Repository  struct {
		ID       int64  `json:"id"`
		Name     string `json:"name"`
		FullName string `json:"full_name"`
		Owner    struct {
			Login string `json:"login"`
		} `json:"owner"`
	} `json:"repository"`
	Installation struct {
		ID int64 `json:"id"`
	} `json:"installation"`
	Sender struct {
		Login string `json:"login"`
	} `json:"sender"`
}

// emitLocked records and queues the workflow_job delivery for j's current
// status. It never blocks on the network.
func (s *Server) emitLocked(j *job) {
	var p hookPayload
	p.Action = j.Status
	p.WorkflowJob = j.api()
	p.Repository.ID = 1
	p.Repository.FullName = j.Repo
	owner, name, _ := strings.Cut(j.Repo, "/")
	p.Repository.Name, p.Repository.Owner.Login = name, owner
	p.Installation.ID = j.InstallationID
	p.Sender.Login = "octocat"
	body, _ := json.Marshal(p)

	h := s.actions.hooks
	h.start()
	h.mu.Lock()
	defer h.mu.Unlock()
	d := h.recordLocked(newGUID(), j.Status, j.ID, j.InstallationID, body, false)
	k := &h.knobs
	if j.Status == JobInProgress && k.HoldInProgress {
		h.held = append(h.held, d)
		return
	}
	if j.Status != JobQueued {
		h.queueLocked(d, 0)
		return
	}
	if k.DropQueued > 0 || (k.DropQueuedProbability > 0 && mrand.Float64() < k.DropQueuedProbability) {
		if k.DropQueued > 0 {
			k.DropQueued--
		}
		d.Pending, d.Status, d.DeliveredAt = false, "failed to connect to host", time.Now().UTC()
		return
	}
	h.queueLocked(d, k.QueuedDelay)
	if k.DuplicateSameID {
		h.queueLocked(h.recordLocked(d.GUID, d.Action, j.ID, j.InstallationID, body, true), k.QueuedDelay)
	}
	if k.DuplicateNewID {
		h.queueLocked(h.recordLocked(newGUID(), d.Action, j.ID, j.InstallationID, body, false), k.QueuedDelay)
	}
}

func (h *hookState) recordLocked(guid, action string, jobID, inst int64, body []byte, redelivery bool) *delivery {
	h.nextID++
	d := &delivery{Delivery: Delivery{
		ID: h.nextID, GUID: guid, Event: "workflow_job", Action: action, JobID: jobID,
		InstallationID: inst, Redelivery: redelivery, Pending: true,
	}, payload: body}
	h.all = append(h.all, d)
	h.byID[d.ID] = d
	return d
}

func (h *hookState) queueLocked(d *delivery, delay time.Duration) {
	if delay <= 0 {
		select {
		case h.work <- d:
		default: // a full queue is a failed delivery, never a blocked broker
			d.Pending, d.Status = false, "delivery queue full"
		}
		return
	}
	time.AfterFunc(delay, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.queueLocked(d, 0)
	})
}

func (h *hookState) send(d *delivery) {
	h.mu.Lock()
	cfg := h.cfg
	h.mu.Unlock()
	code, status := 0, "no webhook URL configured"
	start := time.Now()
	if cfg.URL != "" {
		code, status = h.post(cfg, d)
	}
	h.mu.Lock()
	d.Pending, d.StatusCode, d.Status, d.DeliveredAt = false, code, status, start.UTC()
	h.mu.Unlock()
}

func (h *hookState) post(cfg WebhookConfig, d *delivery) (int, string) {
	req, err := http.NewRequestWithContext(h.ctx, http.MethodPost, cfg.URL, bytes.NewReader(d.payload))
	if err != nil {
		return 0, "invalid webhook URL"
	}
	mac := hmac.New(sha256.New, []byte(cfg.Secret))
	mac.Write(d.payload)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "GitHub-Hookshot/githubfake")
	req.Header.Set("X-GitHub-Event", d.Event)
	req.Header.Set("X-GitHub-Delivery", d.GUID)
	req.Header.Set("X-GitHub-Hook-ID", "1")
	req.Header.Set("X-GitHub-Hook-Installation-Target-Type", "integration")
	req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(mac.Sum(nil)))
	resp, err := h.client.Do(req)
	if err != nil {
		return 0, "failed to connect to host"
	}
	resp.Body.Close()
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return resp.StatusCode, "OK"
	}
	return resp.StatusCode, fmt.Sprintf("Invalid HTTP Response: %d", resp.StatusCode)
}

func newGUID() string {
	b := randomHex(16)
	return b[0:8] + "-" + b[8:12] + "-" + b[12:16] + "-" + b[16:20] + "-" + b[20:32]
}
