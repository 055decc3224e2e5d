package webhook_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/rs/zerolog"

	"github.com/ephemera-ci/ephemera/internal/config"
	"github.com/ephemera-ci/ephemera/internal/syncbuf"
	"github.com/ephemera-ci/ephemera/webhook"
)

// TestLogsHoldNoSecretOrPayload sends deliveries that end in every kind of
// outcome, with a marker in the payload, and checks the log: one line per
// request with its ids, and never the secret, a signature or the marker.
func TestLogsHoldNoSecretOrPayload(t *testing.T) {
	const (
		secret = "hunter2-webhook-secret-do-not-log"
		marker = "PAYLOAD-MARKER-7d1f3c"
	)
	var logs syncbuf.Buffer
	pub := &fakePublisher{}
	h, err := webhook.New(webhook.Config{
		Secrets:   []config.Secret{config.NewSecret(secret)},
		Pools:     testPools,
		Publisher: pub,
		Log:       zerolog.New(&logs).Level(zerolog.DebugLevel),
	})
	if err != nil {
		t.Fatal(err)
	}
	queued := editJSON(t, fixture(t, "workflow_job_queued.json"), func(p map[string]any) {
		p["repository"].(map[string]any)["description"] = marker
		p["workflow_job"].(map[string]any)["name"] = marker
	})
	stored := newDelivery("workflow_job", queued, secret)
	requests := []*http.Request{
		stored,
		newDelivery("workflow_job", queued, "wrong-secret"),
		newDelivery("workflow_job", []byte(`{"action":"`+marker+`"`), secret),
		newDelivery("workflow_job", []byte(`{"action":"queued","workflow_job":{"id":"`+marker+`"}}`), secret),
		newDelivery("workflow_job", []byte(`{"action":"`+marker+`","workflow_job":{"id":1}}`), secret),
		newDelivery("issues", []byte(`{"title":"`+marker+`"}`), secret),
		newDelivery("workflow_job", editJSON(t, queued, func(p map[string]any) { p["workflow_job"].(map[string]any)["labels"] = []string{marker} }), secret),
	}
	badID := newDelivery("workflow_job", queued, secret)
	badID.Header.Set("X-GitHub-Delivery", marker+" with spaces")
	requests = append(requests, badID)
	for _, r := range requests {
		serve(t, h, r)
	}
	pub.Err = errors.New("nats: no response from stream")
	serve(t, h, newDelivery("workflow_job", queued, secret))

	out := logs.String()
	for _, leak := range []string{secret, marker, strings.TrimPrefix(stored.Header.Get("X-Hub-Signature-256"), "sha256=")} {
		if strings.Contains(out, leak) {
			t.Errorf("the log holds %q:\n%s", leak, out)
		}
	}

	var lines []map[string]any
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var line map[string]any
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("log line is not JSON: %q", sc.Text())
		}
		lines = append(lines, line)
	}
	if len(lines) != len(requests)+1 {
		t.Fatalf("got %d log lines for %d requests:\n%s", len(lines), len(requests)+1, out)
	}
	first := lines[0]
	delete(first, "duration")
	want := map[string]any{
		"level":    "info",
		"delivery": stored.Header.Get("X-GitHub-Delivery"),
		"event":    "workflow_job",
		"action":   "queued",
		"job_id":   float64(33299912345),
		"pool":     "small",
		"outcome":  "stored",
		"status":   float64(202),
		"message":  "webhook delivery",
	}
	if diff := cmp.Diff(first, want); diff != "" {
		t.Errorf("log line of a stored delivery (-got +want):\n%s", diff)
	}
	last := lines[len(lines)-1]
	if last["level"] != "error" || last["outcome"] != "unavailable" || last["error"] == nil {
		t.Errorf("log line of a bus failure = %v, want level error, outcome unavailable and the cause", last)
	}
	if _, ok := lines[len(lines)-2]["delivery"]; ok {
		t.Errorf("an invalid delivery id was logged: %v", lines[len(lines)-2])
	}
}
