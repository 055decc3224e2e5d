package webhook_test

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ephemera-ci/ephemera/internal/bus/bustest"
	"github.com/ephemera-ci/ephemera/internal/jobs"
	"github.com/ephemera-ci/ephemera/webhook"
)

var received = time.Date(2026, 11, 27, 17, 3, 42, 123000000, time.UTC)

func fixedNow() time.Time { return received }

// TestStoresEventInJetStream posts a completed job and reads back what
// JetStream stored: subject, Nats-Msg-Id and every field of the event.
func TestStoresEventInJetStream(t *testing.T) {
	b, _ := bustest.Open(t)
	h := newHandler(t, webhook.Config{Publisher: b.JS, Now: fixedNow})
	r := newDelivery("workflow_job", fixture(t, "workflow_job_completed.json"), newSecret)
	id := r.Header.Get("X-GitHub-Delivery")

	status, body := serve(t, h, r)
	if status != http.StatusAccepted {
		t.Fatalf("status = %d, want 202 (%v)", status, body)
	}
	msgs := streamMsgs(t, b.JS)
	if len(msgs) != 1 {
		t.Fatalf("stream holds %d messages, want 1", len(msgs))
	}
	m := msgs[0]
	if want := jobs.Subject("small", jobs.Completed); m.Subject != want {
		t.Errorf("subject = %q, want %q", m.Subject, want)
	}
	if got := m.Header.Get(jetstream.MsgIDHeader); got != id {
		t.Errorf("Nats-Msg-Id = %q, want the delivery id %q", got, id)
	}
	var got jobs.Event
	if err := json.Unmarshal(m.Data, &got); err != nil {
		t.Fatalf("stored body is not a jobs.Event: %v", err)
	}
	want := jobs.Event{
		V:              1,
		Delivery:       id,
		Action:         jobs.Completed,
		JobID:          33299912345,
		RunID:          11946071316,
		RunAttempt:     2,
		Repository:     "octo-org/hello-world",
		Owner:          "octo-org",
		InstallationID: 57124311,
		Labels:         []string{"self-hosted", "Linux", "X64", "small"},
		RunnerID:       4217,
		RunnerName:     "eph-small-7f3k2q",
		Conclusion:     "success",
		CreatedAt:      time.Date(2026, 11, 27, 16, 58, 7, 0, time.UTC),
		StartedAt:      time.Date(2026, 11, 27, 16, 58, 19, 0, time.UTC),
		CompletedAt:    time.Date(2026, 11, 27, 17, 3, 41, 0, time.UTC),
		ReceivedAt:     received,
		Pool:           "small",
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("stored event (-got +want):\n%s", diff)
	}
}

// TestDuplicateDeliveryIsStoredOnce redelivers the same delivery id: both
// answers are 202 with the same body, and the stream holds one message.
func TestDuplicateDeliveryIsStoredOnce(t *testing.T) {
	b, _ := bustest.Open(t)
	h := newHandler(t, webhook.Config{Publisher: b.JS})
	queued := fixture(t, "workflow_job_queued.json")
	first := newDelivery("workflow_job", queued, newSecret)
	id := first.Header.Get("X-GitHub-Delivery")
	again := newDelivery("workflow_job", queued, newSecret)
	again.Header.Set("X-GitHub-Delivery", id)

	want := map[string]any{"delivery": id, "pool": "small"}
	for i, r := range []*http.Request{first, again} {
		status, body := serve(t, h, r)
		if status != http.StatusAccepted {
			t.Errorf("delivery %d: status = %d, want 202", i+1, status)
		}
		if diff := cmp.Diff(body, want); diff != "" {
			t.Errorf("delivery %d: body (-got +want):\n%s", i+1, diff)
		}
	}
	if n := len(streamMsgs(t, b.JS)); n != 1 {
		t.Errorf("stream holds %d messages, want 1", n)
	}
}

// TestBusDownIsAnswered503 stops the NATS server: the delivery must not be
// claimed as stored, and the answer must come once the publish timeout is
// over, well before GitHub's 10 s.
func TestBusDownIsAnswered503(t *testing.T) {
	b, srv := bustest.Open(t)
	const timeout = 300 * time.Millisecond
	h := newHandler(t, webhook.Config{Publisher: b.JS, PublishTimeout: timeout})
	srv.Shutdown()
	srv.WaitForShutdown()

	start := time.Now()
	status, body := serve(t, h, newDelivery("workflow_job", fixture(t, "workflow_job_queued.json"), newSecret))
	elapsed := time.Since(start)
	if status != http.StatusServiceUnavailable {
		t.Errorf("status = %d, want 503 (%v)", status, body)
	}
	if _, ok := body["delivery"]; ok {
		t.Errorf("body %v claims the delivery was stored", body)
	}
	if elapsed > timeout+2*time.Second {
		t.Errorf("answered after %v, want about the publish timeout (%v)", elapsed, timeout)
	}
}

// streamMsgs returns every message in the job stream.
func streamMsgs(t *testing.T, js jetstream.JetStream) []*jetstream.RawStreamMsg {
	t.Helper()
	s, err := js.Stream(t.Context(), jobs.Stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var msgs []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(t.Context(), seq)
		if err != nil {
			t.Fatalf("get message %d: %v", seq, err)
		}
		msgs = append(msgs, m)
	}
	return msgs
}
