package scalertest

import (
	"net/http"
	"net/http/httptest"
	"sync/atomic"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/ephemera-ci/ephemera/internal/config"
	"github.com/ephemera-ci/ephemera/webhook"
)

// Bridge serves ephemera's real webhook receiver for the GitHub stand-in's
// workflow_job webhooks, storing them in JetStream (signature checked,
// Nats-Msg-Id = delivery id, pool by labels), so scaler tests get their
// events exactly as production does. It answers 503 while Down is set, as
// an unreachable receiver would.
type Bridge struct {
	URL    string
	Secret string
	Down   atomic.Bool

	srv *httptest.Server
}

// NewBridge serves a bridge until Close.
func NewBridge(js jetstream.JetStream, pools []config.Pool, secret string) *Bridge {
	h, err := webhook.New(webhook.Config{
		Secrets:   []config.Secret{config.NewSecret(secret)},
		Pools:     pools,
		Publisher: js,
		Log:       zerolog.Nop(),
	})
	if err != nil {
		panic("scalertest: webhook receiver: " + err.Error()) // test setup with a bad pool
	}
	b := &Bridge{Secret: secret}
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if b.Down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		h.ServeHTTP(w, r)
	}))
	b.URL = b.srv.URL + "/webhook"
	return b
}

// Close stops serving.
func (b *Bridge) Close() { b.srv.Close() }
