package webhook_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ephemera-ci/ephemera/internal/config"
	"github.com/ephemera-ci/ephemera/webhook"
)

// TestStatusCodes drives every answer of the HTTP contract through the
// handler, one request per case.
func TestStatusCodes(t *testing.T) {
	queued := fixture(t, "workflow_job_queued.json")
	size := int64(len(queued))
	sha1Only := func(r *http.Request) {
		r.Header.Del("X-Hub-Signature-256")
		r.Header.Set("X-Hub-Signature", "sha1=0123456789abcdef0123456789abcdef01234567")
	}
	tests := []struct {
		name    string
		event   string // default workflow_job
		body    []byte // default the queued fixture; signed with newSecret
		secret  string // default newSecret
		edit    func(r *http.Request)
		maxBody int64
		pubErr  error

		wantStatus    int
		wantBody      map[string]any // compared whole; the delivery id is filled in
		wantError     string         // a part of the "error" message instead
		wantPublished int
	}{
		{name: "a queued job matching a pool is stored", wantStatus: 202, wantBody: map[string]any{"delivery": "", "pool": "small"}, wantPublished: 1},
		{name: "a delivery signed with the old secret is accepted during rotation", secret: oldSecret, wantStatus: 202, wantBody: map[string]any{"delivery": "", "pool": "small"}, wantPublished: 1},
		{name: "a JSON content type with a charset is accepted", edit: func(r *http.Request) { r.Header.Set("Content-Type", "application/json; charset=utf-8") }, wantStatus: 202, wantBody: map[string]any{"delivery": "", "pool": "small"}, wantPublished: 1},
		{name: "a body exactly at the limit is accepted", maxBody: size, wantStatus: 202, wantBody: map[string]any{"delivery": "", "pool": "small"}, wantPublished: 1},
		{name: "ping is answered 200", event: "ping", body: []byte(`{"zen":"Keep it logically awesome.","hook_id":429180301}`), wantStatus: 200, wantBody: map[string]any{"ok": true}},
		{name: "another event is ignored", event: "issues", body: []byte(`{"action":"opened"}`), wantStatus: 202, wantBody: map[string]any{"ignored": "event issues is not handled"}},
		{name: "a job whose labels match no pool is ignored", body: withLabels(t, "self-hosted", "windows"), wantStatus: 202, wantBody: map[string]any{"ignored": "no pool has all of the job's labels"}},
		{name: "a job without labels is ignored", body: withLabels(t), wantStatus: 202, wantBody: map[string]any{"ignored": "no pool has all of the job's labels"}},
		{name: "a missing X-GitHub-Event is refused", edit: func(r *http.Request) { r.Header.Del("X-GitHub-Event") }, wantStatus: 400, wantError: "X-GitHub-Event"},
		{name: "a missing X-GitHub-Delivery is refused", edit: func(r *http.Request) { r.Header.Del("X-GitHub-Delivery") }, wantStatus: 400, wantError: "X-GitHub-Delivery"},
		{name: "a missing header is refused as such even without a signature", edit: func(r *http.Request) { r.Header.Del("X-GitHub-Event"); r.Header.Del("X-Hub-Signature-256") }, wantStatus: 400, wantError: "X-GitHub-Event"},
		{name: "a delivery id with a space is refused", edit: func(r *http.Request) { r.Header.Set("X-GitHub-Delivery", "a b") }, wantStatus: 400, wantError: "X-GitHub-Delivery"},
		{name: "a delivery id over 100 characters is refused", edit: func(r *http.Request) { r.Header.Set("X-GitHub-Delivery", strings.Repeat("a", 101)) }, wantStatus: 400, wantError: "X-GitHub-Delivery"},
		{name: "a delivery id with a control character is refused", edit: func(r *http.Request) { r.Header.Set("X-GitHub-Delivery", "a\x7fb") }, wantStatus: 400, wantError: "X-GitHub-Delivery"},
		{name: "malformed JSON is refused", body: []byte(`{"action":"queued",`), wantStatus: 400, wantError: "not valid JSON"},
		{name: "malformed JSON in a ping is refused", event: "ping", body: []byte(`{`), wantStatus: 400, wantError: "not valid JSON"},
		{name: "a workflow_job without its workflow_job object is refused", body: []byte(`{"action":"queued","repository":{"full_name":"o/r"}}`), wantStatus: 400, wantError: "no workflow_job object"},
		{name: "a workflow_job with an unknown action is refused", body: editJSON(t, queued, func(p map[string]any) { p["action"] = "requested" }), wantStatus: 400, wantError: "action"},
		{name: "a workflow_job without a job id is refused", body: editJSON(t, queued, func(p map[string]any) { delete(p["workflow_job"].(map[string]any), "id") }), wantStatus: 400, wantError: "workflow_job.id"},
		{name: "a workflow_job without a repository is refused", body: editJSON(t, queued, func(p map[string]any) { delete(p, "repository") }), wantStatus: 400, wantError: "repository.full_name"},
		{name: "a workflow_job with a field of the wrong type is refused", body: editJSON(t, queued, func(p map[string]any) { p["workflow_job"].(map[string]any)["id"] = "33299912345" }), wantStatus: 400, wantError: "workflow_job.id has the wrong type"},
		{name: "a missing signature is refused", edit: func(r *http.Request) { r.Header.Del("X-Hub-Signature-256") }, wantStatus: 401, wantError: "missing X-Hub-Signature-256"},
		{name: "a signature made with another secret is refused", secret: "not-the-secret", wantStatus: 401, wantError: "does not match"},
		{name: "a signature of another body is refused", edit: func(r *http.Request) { r.Header.Set("X-Hub-Signature-256", webhook.Sign(newSecret, []byte("{}"))) }, wantStatus: 401, wantError: "does not match"},
		{name: "a signature without its sha256= prefix is refused", edit: func(r *http.Request) {
			r.Header.Set("X-Hub-Signature-256", strings.TrimPrefix(r.Header.Get("X-Hub-Signature-256"), "sha256="))
		}, wantStatus: 401, wantError: "does not match"},
		{name: "a signature that is not hex is refused", edit: func(r *http.Request) { r.Header.Set("X-Hub-Signature-256", "sha256="+strings.Repeat("zz", 32)) }, wantStatus: 401, wantError: "does not match"},
		{name: "a SHA-1 signature alone is refused", edit: sha1Only, wantStatus: 401, wantError: "SHA-1"},
		{name: "an unsigned body is refused before it is parsed", body: []byte(`not json`), edit: func(r *http.Request) { r.Header.Del("X-Hub-Signature-256") }, wantStatus: 401, wantError: "X-Hub-Signature-256"},
		{name: "GET is refused", edit: func(r *http.Request) { r.Method = http.MethodGet }, wantStatus: 405, wantError: "POST"},
		{name: "PUT is refused", edit: func(r *http.Request) { r.Method = http.MethodPut }, wantStatus: 405, wantError: "POST"},
		{name: "a body one byte over the limit is refused", maxBody: size - 1, wantStatus: 413, wantError: "larger"},
		{name: "a body over the limit without a declared length is refused", maxBody: size - 1, edit: func(r *http.Request) { r.ContentLength = -1 }, wantStatus: 413, wantError: "larger"},
		{name: "a form-encoded delivery is refused with advice", edit: func(r *http.Request) { r.Header.Set("Content-Type", "application/x-www-form-urlencoded") }, wantStatus: 415, wantError: "set the webhook's content type to application/json"},
		{name: "a text body is refused", edit: func(r *http.Request) { r.Header.Set("Content-Type", "text/plain") }, wantStatus: 415, wantError: "application/json"},
		{name: "a missing content type is refused", edit: func(r *http.Request) { r.Header.Del("Content-Type") }, wantStatus: 415, wantError: "application/json"},
		{name: "a bus failure is answered 503", pubErr: errors.New("nats: timeout on internal-subject-xyz"), wantStatus: 503, wantError: "could not be stored"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.event == "" {
				tt.event = "workflow_job"
			}
			if tt.body == nil {
				tt.body = queued
			}
			if tt.secret == "" {
				tt.secret = newSecret
			}
			pub := &fakePublisher{Err: tt.pubErr}
			h := newHandler(t, webhook.Config{Publisher: pub, MaxBody: tt.maxBody})
			r := newDelivery(tt.event, tt.body, tt.secret)
			if tt.edit != nil {
				tt.edit(r)
			}
			status, body := serve(t, h, r)
			if status != tt.wantStatus {
				t.Errorf("status = %d, want %d (body %v)", status, tt.wantStatus, body)
			}
			if tt.wantBody != nil {
				if _, ok := tt.wantBody["delivery"]; ok {
					tt.wantBody["delivery"] = r.Header.Get("X-GitHub-Delivery")
				}
				if diff := cmp.Diff(body, tt.wantBody); diff != "" {
					t.Errorf("body (-got +want):\n%s", diff)
				}
			} else {
				msg, _ := body["error"].(string)
				if !strings.Contains(msg, tt.wantError) || len(body) != 1 {
					t.Errorf("body = %v, want only an error that mentions %q", body, tt.wantError)
				}
				if tt.pubErr != nil && strings.Contains(msg, "internal-subject-xyz") {
					t.Errorf("the internal error reached the client: %q", msg)
				}
			}
			if got := len(pub.Msgs()); got != tt.wantPublished {
				t.Errorf("published %d messages, want %d", got, tt.wantPublished)
			}
		})
	}
}

func TestMethodNotAllowedNamesPOST(t *testing.T) {
	h := newHandler(t, webhook.Config{Publisher: &fakePublisher{}})
	r := newDelivery("workflow_job", fixture(t, "workflow_job_queued.json"), newSecret)
	r.Method = http.MethodGet
	w := newRecorder()
	h.ServeHTTP(w, r)
	if got := w.Header().Get("Allow"); got != "POST" {
		t.Errorf("Allow = %q, want POST", got)
	}
}

// TestRouting checks that a job goes to the first pool, in config order,
// that has every one of its labels, whatever their case.
func TestRouting(t *testing.T) {
	pools := []config.Pool{
		{Name: "small", Labels: []string{"self-hosted", "linux", "x64", "small"}},
		{Name: "gpu", Labels: []string{"self-hosted", "Linux", "X64", "gpu"}},
		{Name: "large", Labels: []string{"self-hosted", "linux", "x64", "large", "small"}},
	}
	tests := []struct {
		name   string
		labels []string
		want   string // pool; "" when ignored
	}{
		{"all of a pool's labels route to it", []string{"self-hosted", "linux", "x64", "small"}, "small"},
		{"a subset of a pool's labels routes to it", []string{"self-hosted"}, "small"},
		{"labels are compared case-insensitively", []string{"Self-Hosted", "LINUX", "x64", "Small"}, "small"},
		{"pool labels are compared case-insensitively", []string{"self-hosted", "linux", "x64", "gpu"}, "gpu"},
		{"the first matching pool in config order wins", []string{"small", "large"}, "large"},
		{"the first of two matching pools wins", []string{"linux", "x64"}, "small"},
		{"a label no pool has matches nothing", []string{"self-hosted", "arm64"}, ""},
		{"a repeated label still matches", []string{"small", "SMALL"}, "small"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pub := &fakePublisher{}
			h := newHandler(t, webhook.Config{Publisher: pub, Pools: pools})
			status, body := serve(t, h, newDelivery("workflow_job", withLabels(t, tt.labels...), newSecret))
			if status != http.StatusAccepted {
				t.Fatalf("status = %d, want 202 (%v)", status, body)
			}
			got, _ := body["pool"].(string)
			if got != tt.want {
				t.Errorf("pool = %q, want %q (body %v)", got, tt.want, body)
			}
			if tt.want != "" {
				if msgs := pub.Msgs(); len(msgs) != 1 || msgs[0].Subject != "ephemera.jobs."+tt.want+".queued" {
					t.Errorf("published %v, want one message on ephemera.jobs.%s.queued", subjects(msgs), tt.want)
				}
			}
		})
	}
}

func TestNewRefusesAnIncompleteConfig(t *testing.T) {
	pub := &fakePublisher{}
	secrets := []config.Secret{config.NewSecret(newSecret)}
	tests := []struct {
		name string
		cfg  webhook.Config
		want string
	}{
		{"no secret", webhook.Config{Publisher: pub}, "Secrets is required"},
		{"an empty secret", webhook.Config{Publisher: pub, Secrets: []config.Secret{config.NewSecret(newSecret), {}}}, "Secrets[1] is empty"},
		{"no publisher", webhook.Config{Secrets: secrets}, "Publisher is required"},
		{"a pool name that breaks subjects", webhook.Config{Secrets: secrets, Publisher: pub, Pools: []config.Pool{{Name: "a.b", Labels: []string{"x"}}}}, "Pools[0]"},
		{"a pool without labels", webhook.Config{Secrets: secrets, Publisher: pub, Pools: []config.Pool{{Name: "a"}}}, "Pools[0] (a) has no labels"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := webhook.New(tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New = %v, want an error naming %q", err, tt.want)
			}
		})
	}
}

// TestMetrics checks the request counter's labels, including that an
// unknown event name is folded into "other".
func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	h := newHandler(t, webhook.Config{Publisher: &fakePublisher{}, Registerer: reg})
	queued := fixture(t, "workflow_job_queued.json")
	serve(t, h, newDelivery("workflow_job", queued, newSecret))
	dup := newDelivery("workflow_job", queued, newSecret)
	again := newDelivery("workflow_job", queued, newSecret)
	again.Header.Set("X-GitHub-Delivery", dup.Header.Get("X-GitHub-Delivery"))
	serve(t, h, dup)
	serve(t, h, again)
	serve(t, h, newDelivery("ping", []byte(`{}`), newSecret))
	serve(t, h, newDelivery("made-up-event-name", []byte(`{}`), newSecret))
	serve(t, h, newDelivery("workflow_job", withLabels(t, "windows"), newSecret))
	serve(t, h, newDelivery("workflow_job", queued, "wrong"))

	want := map[string]float64{
		"other/ignored_event":       1,
		"ping/ping":                 1,
		"workflow_job/duplicate":    1,
		"workflow_job/no_pool":      1,
		"workflow_job/stored":       2,
		"workflow_job/unauthorized": 1,
	}
	if diff := cmp.Diff(gatherCounts(t, reg), want); diff != "" {
		t.Errorf("ephemera_webhook_requests_total (-got +want):\n%s", diff)
	}
}

// gatherCounts returns ephemera_webhook_requests_total by "event/outcome",
// and checks that the duration histogram has a series for every outcome.
func gatherCounts(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]float64{}
	histograms := map[string]bool{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			switch f.GetName() {
			case "ephemera_webhook_requests_total":
				counts[labels["event"]+"/"+labels["outcome"]] = m.GetCounter().GetValue()
			case "ephemera_webhook_request_duration_seconds":
				histograms[labels["outcome"]] = m.GetHistogram().GetSampleCount() > 0
			}
		}
	}
	for key := range counts {
		_, outcome, _ := strings.Cut(key, "/")
		if !histograms[outcome] {
			t.Errorf("no request duration observed for outcome %s", outcome)
		}
	}
	return counts
}

// panickingPublisher panics on every publish.
type panickingPublisher struct{}

func (panickingPublisher) PublishMsg(context.Context, *nats.Msg, ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	var m map[string]*struct{ n int }
	return nil, fmt.Errorf("%d", m["x"].n)
}

// TestPanicIsAnswered503: a panic while handling a delivery is a 503
// (GitHub can redeliver), not a dropped connection.
func TestPanicIsAnswered503(t *testing.T) {
	h := newHandler(t, webhook.Config{Publisher: panickingPublisher{}})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	body := fixture(t, "workflow_job_queued.json")
	req, _ := http.NewRequest(http.MethodPost, srv.URL, bytes.NewReader(body))
	req.Header = newDelivery("workflow_job", body, newSecret).Header
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("a panic dropped the connection: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("status %d, want 503", resp.StatusCode)
	}
}
