package standin

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/ephemera-ci/ephemera/scaler"
)

// Client is a scaler.Provisioner backed by a Server over HTTP.
type Client struct {
	base string
	hc   *http.Client
}

var _ scaler.Provisioner = (*Client)(nil)

// NewClient returns a client of the service at baseURL
// (http://host:port).
func NewClient(baseURL string) *Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 256 // a replica creates up to its concurrency at once
	return &Client{base: strings.TrimSuffix(baseURL, "/"), hc: &http.Client{Transport: tr, Timeout: 5 * time.Minute}}
}

// Create implements scaler.Provisioner. Only the name, pool and job go
// over the wire; the JIT config and policy token stay with the scaler.
func (c *Client) Create(ctx context.Context, spec scaler.InstanceSpec) error {
	body, _ := json.Marshal(createRequest{Name: spec.Name, Pool: spec.Pool, JobID: spec.JobID})
	code, err := c.do(ctx, http.MethodPost, "/instances", body, nil)
	if err != nil {
		return fmt.Errorf("create %s: %w", spec.Name, err)
	}
	switch code {
	case http.StatusCreated:
		return nil
	case http.StatusConflict:
		return fmt.Errorf("create %s: %w", spec.Name, scaler.ErrInstanceExists)
	}
	return fmt.Errorf("create %s: stand-in answered %d", spec.Name, code)
}

// List implements scaler.Provisioner.
func (c *Client) List(ctx context.Context) ([]scaler.Instance, error) {
	var out []scaler.Instance
	code, err := c.do(ctx, http.MethodGet, "/instances", nil, &out)
	if err != nil {
		return nil, fmt.Errorf("list instances: %w", err)
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("list instances: stand-in answered %d", code)
	}
	return out, nil
}

// Delete implements scaler.Provisioner; an instance already gone is
// success.
func (c *Client) Delete(ctx context.Context, name string) error {
	code, err := c.do(ctx, http.MethodDelete, "/instances/"+url.PathEscape(name), nil, nil)
	if err != nil {
		return fmt.Errorf("delete %s: %w", name, err)
	}
	if code != http.StatusNoContent && code != http.StatusNotFound {
		return fmt.Errorf("delete %s: stand-in answered %d", name, code)
	}
	return nil
}

func (c *Client) do(ctx context.Context, method, path string, body []byte, out any) (int, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if out != nil && resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			return 0, fmt.Errorf("decode: %w", err)
		}
		return resp.StatusCode, nil
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}
