package webhook

import (
	"bytes"
	"errors"
	"fmt"
	"mime"
	"net/http"
)

// readBody reads at most maxBody bytes into buf.
func (h *Handler) readBody(w http.ResponseWriter, r *http.Request, buf *bytes.Buffer) ([]byte, error) {
	if r.ContentLength > h.maxBody {
		return nil, errTooLarge
	}
	if r.ContentLength > 0 {
		buf.Grow(int(r.ContentLength) + bytes.MinRead)
	}
	if _, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, h.maxBody)); err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return nil, errTooLarge
		}
		return nil, fmt.Errorf("%w: %w", errReadBody, err)
	}
	return buf.Bytes(), nil
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
