package statusweb_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/ephemera-ci/ephemera/internal/bus/bustest"
	"github.com/ephemera-ci/ephemera/internal/config"
	"github.com/ephemera-ci/ephemera/scaler"
	"github.com/ephemera-ci/ephemera/statusweb"
)

const token = "status-token-0123456789abcdef0123456789abcdef"

var pools = []config.Pool{{Name: "small", MinIdle: 1, Max: 3}}

func newView(t *testing.T, mod func(*statusweb.Config)) (jetstream.JetStream, *httptest.Server) {
	t.Helper()
	b, _ := bustest.Open(t)
	cfg := statusweb.Config{JetStream: b.JS, Pools: pools, Log: zerolog.Nop()}
	if mod != nil {
		mod(&cfg)
	}
	h, err := statusweb.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.Config.WriteTimeout = time.Second // the stream must outlive it
	srv.Start()
	t.Cleanup(srv.Close)
	return b.JS, srv
}

func put(t *testing.T, js jetstream.JetStream, bucket, key string, v any) {
	t.Helper()
	kv, err := js.CreateOrUpdateKeyValue(t.Context(), jetstream.KeyValueConfig{Bucket: bucket})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(v)
	if _, err := kv.Put(t.Context(), key, b); err != nil {
		t.Fatal(err)
	}
}

func TestTokenIsRequiredOffLoopback(t *testing.T) {
	noClient := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	cases := []struct {
		name     string
		cfg      func(*statusweb.Config)
		path     string
		header   http.Header
		wantCode int
	}{
		{"on loopback without a token the page is open", nil, "/", nil, 200},
		{"off loopback without a configured token the view is off", func(c *statusweb.Config) { c.RequireToken = true }, "/", nil, 403},
		{"with a token a request without it is refused", func(c *statusweb.Config) { c.Token = config.NewSecret(token) }, "/status/state", nil, 401},
		{"a wrong bearer token is refused", func(c *statusweb.Config) { c.Token = config.NewSecret(token) }, "/status/state", http.Header{"Authorization": {"Bearer nope"}}, 401},
		{"the bearer token is accepted", func(c *statusweb.Config) { c.Token = config.NewSecret(token) }, "/status/state", http.Header{"Authorization": {"Bearer " + token}}, 200},
		{"the cookie the token set is accepted", func(c *statusweb.Config) { c.Token = config.NewSecret(token) }, "/status/assets/app.js", http.Header{"Cookie": {"ephemera_status=" + token}}, 200},
		{"a token in the address sets the cookie and redirects without it", func(c *statusweb.Config) { c.Token = config.NewSecret(token) }, "/?token=" + token, nil, 303},
		{"a wrong token in the address is refused", func(c *statusweb.Config) { c.Token = config.NewSecret(token) }, "/?token=nope", nil, 401},
		{"an unknown path is not found", nil, "/nope", nil, 404},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, srv := newView(t, tc.cfg)
			req, _ := http.NewRequest("GET", srv.URL+tc.path, nil)
			for k, v := range tc.header {
				req.Header[k] = v
			}
			resp, err := noClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.wantCode {
				t.Fatalf("%s: %d, want %d\n%s", tc.path, resp.StatusCode, tc.wantCode, body)
			}
			if strings.Contains(string(body), token) {
				t.Error("the answer shows the token")
			}
			if tc.wantCode == 303 {
				if loc := resp.Header.Get("Location"); loc != "/" {
					t.Errorf("redirect to %q, want /", loc)
				}
				if c := resp.Header.Get("Set-Cookie"); !strings.Contains(c, "HttpOnly") || !strings.Contains(c, "SameSite=Strict") {
					t.Errorf("cookie %q, want HttpOnly and SameSite=Strict", c)
				}
			}
		})
	}
}

// The page needs nothing but its own listener: no external script, style,
// font or image.
func TestPageLoadsNothingFromElsewhere(t *testing.T) {
	_, srv := newView(t, nil)
	for _, p := range []string{"/", "/status/assets/app.js", "/status/assets/app.css"} {
		resp, err := http.Get(srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d", p, resp.StatusCode)
		}
		text := strings.ReplaceAll(string(b), "http://www.w3.org/2000/svg", "") // a namespace name, never fetched
		for _, ref := range []string{"http://", "https://", "//cdn", "@import"} {
			if strings.Contains(text, ref) {
				t.Errorf("%s refers to %q", p, ref)
			}
		}
	}
}

type event struct {
	name string
	st   statusweb.State
}

func readEvents(t *testing.T, ctx context.Context, url string) <-chan event {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	out := make(chan event)
	go func() {
		defer resp.Body.Close()
		defer close(out)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		var ev event
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "event: "):
				ev.name = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				_ = json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &ev.st)
			case line == "" && ev.name != "":
				select {
				case out <- ev:
				case <-ctx.Done():
					return
				}
				ev = event{}
			}
		}
	}()
	return out
}

// The event stream sends the state at once, then within a fraction of a
// second of each change in KV, and keeps going past the listener's write
// timeout (1 s here).
func TestEventsFollowKVPastTheWriteTimeout(t *testing.T) {
	js, srv := newView(t, func(c *statusweb.Config) { c.Heartbeat = 200 * time.Millisecond })
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	events := readEvents(t, ctx, srv.URL+"/status/events")
	next := func(d time.Duration) event {
		t.Helper()
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatal("the stream ended")
			}
			return ev
		case <-time.After(d):
			t.Fatalf("no event within %s", d)
		}
		return event{}
	}
	first := next(2 * time.Second)
	if first.name != "state" || len(first.st.Pools) != 1 || first.st.Pools[0].Pool != "small" {
		t.Fatalf("first event %+v", first)
	}
	// Heartbeats until well past the write timeout.
	start := time.Now()
	for time.Since(start) < 1500*time.Millisecond {
		next(2 * time.Second)
	}
	queued := time.Now().Add(-3 * time.Second).UTC()
	put(t, js, scaler.BucketJobs, "42", map[string]any{"job_id": 42, "pool": "small", "repo": "acme/web", "state": "waiting", "claimed_at": queued, "job_created_at": queued})
	put(t, js, scaler.BucketRunners, "eph-small-abcd1234", map[string]any{"name": "eph-small-abcd1234", "pool": "small", "job_id": 42, "state": "provisioning", "created_at": time.Now().UTC()})
	changed := time.Now()
	for {
		ev := next(2 * time.Second)
		if len(ev.st.Jobs) == 1 && len(ev.st.Runners) == 1 {
			j, r := ev.st.Jobs[0], ev.st.Runners[0]
			if j.ID != 42 || j.State != "waiting" || j.Repo != "acme/web" || r.State != "provisioning" || r.Job != 42 || r.Repo != "acme/web" {
				t.Fatalf("job %+v runner %+v", j, r)
			}
			if p := ev.st.Pools[0]; p.Provisioning != 1 || p.WaitingJobs != 1 {
				t.Errorf("pool %+v, want 1 provisioning and 1 waiting job, counted from KV now", p)
			}
			t.Logf("change shown %s after the KV write, %s after the stream opened", time.Since(changed).Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
			break
		}
		if time.Since(changed) > 2*time.Second {
			t.Fatal("the change was not shown within 2 s")
		}
	}
	started := time.Now().UTC()
	put(t, js, scaler.BucketJobs, "42", map[string]any{"job_id": 42, "pool": "small", "repo": "acme/web", "state": "provisioned", "claimed_at": queued, "job_created_at": queued, "started": true, "started_at": started, "ran_on": "eph-small-abcd1234"})
	for {
		ev := next(2 * time.Second)
		if len(ev.st.Jobs) == 1 && ev.st.Jobs[0].State == "running" {
			if len(ev.st.Waits) != 1 || ev.st.Waits[0].Seconds < 2.9 {
				t.Errorf("waits %+v, want one of about 3 s", ev.st.Waits)
			}
			break
		}
	}
}

// An open event stream does not hold up the server's graceful shutdown:
// Run's end closes it.
func TestRunEndsTheStreamsSoShutdownCompletes(t *testing.T) {
	b, _ := bustest.Open(t)
	h, err := statusweb.New(statusweb.Config{JetStream: b.JS, Pools: pools, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(t.Context())
	ran := make(chan error, 1)
	go func() { ran <- h.Run(runCtx) }()
	srv := httptest.NewServer(h)
	defer srv.Close()
	events := readEvents(t, t.Context(), srv.URL+"/status/events")
	if ev := <-events; ev.name != "state" {
		t.Fatalf("first event %+v", ev)
	}
	stop()
	if err := <-ran; err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := srv.Config.Shutdown(sctx); err != nil {
		t.Fatalf("shutdown with a stream open: %v", err)
	}
	for range events {
	} // the stream ended
}
