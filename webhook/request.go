package webhook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"time"
)

// firstChunk is how much of a body is read before it needs a slot: more
// than any workflow_job delivery GitHub sends (they are a few KiB), so a
// usual delivery never waits behind others.
const firstChunk = 32 << 10

// readBody reads the body, at most maxBody bytes, into buf.
//
// What a client declares costs nothing: the buffer grows only with the
// bytes that arrive (bytes.Buffer grows in steps of at most its own size),
// never from Content-Length. The whole body must arrive within bodyTimeout
// (a read deadline on the connection), or the request is answered 408. The
// first firstChunk bytes are read without a slot; a body larger than that
// holds one of the handler's slots while the rest is read, so at most
// maxBodies large bodies are held in memory at once. A body that cannot get
// a slot before its deadline is answered 503, which GitHub records as a
// failed delivery that can be redelivered.
func (h *Handler) readBody(w http.ResponseWriter, r *http.Request, buf *bytes.Buffer) ([]byte, error) {
	if r.ContentLength > h.maxBody {
		return nil, errTooLarge
	}
	deadline := time.Now().Add(h.bodyTimeout)
	rc := http.NewResponseController(w)
	bounded := rc.SetReadDeadline(deadline) == nil // not with a test's recorder
	body := http.MaxBytesReader(w, r.Body, h.maxBody)
	b, err := h.readBounded(r.Context(), body, buf, deadline)
	if err != nil {
		// The connection is not reused: what follows on it would be the
		// rest of a body nobody reads.
		w.Header().Set("Connection", "close")
		return nil, err
	}
	if bounded {
		_ = rc.SetReadDeadline(time.Time{})
	}
	return b, nil
}

// readBounded reads body into buf: the first chunk freely, the rest
// holding a slot.
func (h *Handler) readBounded(ctx context.Context, body io.Reader, buf *bytes.Buffer, deadline time.Time) ([]byte, error) {

	h.metrics.bodies.WithLabelValues(bodyReading).Inc()
	defer h.metrics.bodies.WithLabelValues(bodyReading).Dec()
	n, err := buf.ReadFrom(io.LimitReader(body, firstChunk))
	if err != nil {
		return nil, bodyError(err)
	}
	if n < firstChunk {
		return buf.Bytes(), nil // the whole body
	}
	release, err := h.slot(ctx, deadline)
	if err != nil {
		return nil, err
	}
	defer release()
	if _, err := buf.ReadFrom(body); err != nil {
		return nil, bodyError(err)
	}
	return buf.Bytes(), nil
}

// slot waits, until deadline, for one of the slots that bound how many
// large bodies are read at once, and returns its release.
func (h *Handler) slot(ctx context.Context, deadline time.Time) (release func(), err error) {
	select {
	case h.slots <- struct{}{}:
		return func() { <-h.slots }, nil
	default:
	}
	h.metrics.bodies.WithLabelValues(bodyWaiting).Inc()
	defer h.metrics.bodies.WithLabelValues(bodyWaiting).Dec()
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	select {
	case h.slots <- struct{}{}:
		return func() { <-h.slots }, nil
	case <-ctx.Done():
		return nil, errBusy
	}
}

// bodyError maps a failed body read to its refusal.
func bodyError(err error) error {
	if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
		return errTooLarge
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return fmt.Errorf("%w: %w", errBodyTimeout, err)
	}
	return fmt.Errorf("%w: %w", errReadBody, err)
}

// checkContentType accepts application/json, with or without parameters
// such as charset=utf-8.
func checkContentType(v string) error {
	if v == "application/json" {
		return nil
	}
	mt, _, err := mime.ParseMediaType(v)
	switch {
	case err != nil:
		return errContentType
	case mt == "application/json":
		return nil
	case mt == "application/x-www-form-urlencoded":
		return errFormEncoded
	}
	return errContentType
}

// sane reports whether a header value can go into a log line, a NATS
// header and a response: 1 to 100 printable ASCII characters, no spaces.
func sane(v string) bool {
	if v == "" || len(v) > maxDeliveryLen {
		return false
	}
	for i := 0; i < len(v); i++ {
		if v[i] <= ' ' || v[i] > '~' {
			return false
		}
	}
	return true
}
