package webhook_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ephemera-ci/ephemera/webhook"
)

// FuzzHandler feeds the handler arbitrary bodies and headers. It must never
// panic, never answer 2xx to a body whose signature does not match, and
// answer 202 with a delivery only for an event it stored.
func FuzzHandler(f *testing.F) {
	// Small seeds: the fuzzer minimizes every interesting input byte by
	// byte, which takes minutes for inputs derived from the 8 KB fixtures.
	completed := fixture(f, "workflow_job_small.json")
	queued := bytes.Replace(completed, []byte(`"completed"`), []byte(`"queued"`), 1)
	// body, event, delivery, content type, signature header, sign body
	f.Add(queued, "workflow_job", "d-1", "application/json", "", true)
	f.Add(completed, "workflow_job", "d-2", "application/json; charset=utf-8", "", true)
	f.Add(queued, "workflow_job", "d-3", "application/json", "sha256=00", false)
	f.Add(queued, "workflow_job", "d-4", "application/json", webhook.Sign(newSecret, queued), false)
	f.Add([]byte(`{"zen":"hi"}`), "ping", "d-5", "application/json", "", true)
	f.Add([]byte(`{"action":"queued","workflow_job":{"id":1,"labels":["small"]},"repository":{"full_name":"o/r"}}`), "workflow_job", "d-6", "application/json", "", true)
	f.Add([]byte(`{"action":"queued","workflow_job":null}`), "workflow_job", "d-7", "application/json", "", true)
	f.Add([]byte(`{"action":"queued","workflow_job":{"id":1,"labels":[]}}`), "workflow_job", "d-8", "application/json", "", true)
	f.Add([]byte(`[`), "workflow_job", "d-9", "application/json", "", true)
	f.Add([]byte(`payload=%7B%7D`), "workflow_job", "d-10", "application/x-www-form-urlencoded", "", true)
	f.Add([]byte(`{}`), "", "", "", "", false)
	f.Add([]byte(`{}`), "issues", "d 11", "application/json", "sha1=abc", false)

	pub := &fakePublisher{}
	h := newHandler(f, webhook.Config{Publisher: pub, MaxBody: 64 << 10})

	f.Fuzz(func(t *testing.T, body []byte, event, delivery, contentType, signature string, sign bool) {
		r := httptest.NewRequest(http.MethodPost, "/webhook", strings.NewReader(string(body)))
		setHeader(r, "Content-Type", contentType)
		setHeader(r, "X-GitHub-Event", event)
		setHeader(r, "X-GitHub-Delivery", delivery)
		if sign {
			signature = webhook.Sign(newSecret, body)
		}
		setHeader(r, "X-Hub-Signature-256", signature)
		signed := signature == webhook.Sign(newSecret, body) || signature == webhook.Sign(oldSecret, body)

		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)

		switch w.Code {
		case 200, 202, 400, 401, 405, 413, 415, 503:
		default:
			t.Fatalf("status %d is not in the contract", w.Code)
		}
		if w.Code/100 == 2 && !signed {
			t.Fatalf("answered %d to a body whose signature does not match", w.Code)
		}
		var answer map[string]any
		if err := json.Unmarshal(w.Body.Bytes(), &answer); err != nil {
			t.Fatalf("answer is not JSON: %q", w.Body.String())
		}
		if id, ok := answer["delivery"].(string); ok && !pub.Stored(id) {
			t.Fatalf("answered %d for delivery %q that was never published", w.Code, id)
		}
	})
}

// setHeader sets a header as a client would send it, leaving it out when
// empty; values a client cannot send are left out too.
func setHeader(r *http.Request, key, value string) {
	if value != "" {
		r.Header.Set(key, value)
	}
}
