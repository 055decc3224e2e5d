package statusweb

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ephemera-ci/ephemera/internal/logkey"
	"github.com/ephemera-ci/ephemera/scaler"
)

// minGap bounds how often one stream sends: a burst of KV changes is sent
// as one state.
const minGap = 150 * time.Millisecond

func (h *Handler) state(w http.ResponseWriter, r *http.Request) {
	st, err := h.read(r.Context())
	if err != nil {
		h.cfg.Log.Warn().Err(err).Msg("status view: read state")
		http.Error(w, "the state cannot be read from NATS now", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(st)
}

// events streams the state: at once, on every change in the scaler's KV
// buckets, and every Heartbeat. The stream clears the listener's write
// deadline, so it outlives the server's WriteTimeout.
func (h *Handler) events(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	rc := http.NewResponseController(w)
	if err := rc.SetWriteDeadline(time.Time{}); err != nil && !errors.Is(err, http.ErrNotSupported) {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)

	changed := make(chan struct{}, 1)
	watching := map[string]bool{}
	watch := func() {
		for _, b := range scaler.StatusBuckets {
			if !watching[b] && h.watch(ctx, b, changed) {
				watching[b] = true
			}
		}
	}
	watch()
	heartbeat := time.NewTicker(h.cfg.Heartbeat)
	defer heartbeat.Stop()
	var last time.Time
	for {
		if wait := minGap - time.Since(last); wait > 0 {
			select {
			case <-ctx.Done():
				return
			case <-h.done:
				return
			case <-time.After(wait):
			}
		}
		if err := h.send(ctx, w, rc); err != nil {
			return
		}
		last = time.Now()
		select {
		case <-ctx.Done():
			return
		case <-h.done:
			return
		case <-changed:
		case <-heartbeat.C:
			watch() // buckets made since
		}
	}
}

// watch signals changed on every update of bucket until ctx ends; false
// when the bucket does not exist (yet).
func (h *Handler) watch(ctx context.Context, bucket string, changed chan<- struct{}) bool {
	kv, err := h.cfg.JetStream.KeyValue(ctx, bucket)
	if err != nil {
		return false
	}
	wt, err := kv.WatchAll(ctx, jetstream.UpdatesOnly())
	if err != nil {
		h.cfg.Log.Warn().Err(err).Str(logkey.Component, "status").Msg("watch " + bucket)
		return false
	}
	go func() {
		defer wt.Stop() //nolint:errcheck
		for {
			select {
			case <-ctx.Done():
				return
			case _, ok := <-wt.Updates():
				if !ok {
					return
				}
				select {
				case changed <- struct{}{}:
				default:
				}
			}
		}
	}()
	return true
}

func (h *Handler) send(ctx context.Context, w http.ResponseWriter, rc *http.ResponseController) error {
	st, err := h.read(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		h.cfg.Log.Warn().Err(err).Msg("status view: read state")
		_, err = fmt.Fprint(w, ": state unavailable\n\n") // a comment keeps the stream open
	} else {
		b, _ := json.Marshal(st)
		_, err = fmt.Fprintf(w, "event: state\ndata: %s\n\n", b)
	}
	if err != nil {
		return err
	}
	return rc.Flush()
}
