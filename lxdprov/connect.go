package lxdprov

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	lxd "github.com/canonical/lxd/client"
)

// Where LXD listens locally, in the order New tries them when lxd.socket
// is unset.
const (
	SnapSocket   = "/var/snap/lxd/common/lxd/unix.socket"
	DebianSocket = "/var/lib/lxd/unix.socket"
)

// requestTimeout bounds every synchronous LXD request. Long work (creating,
// starting, stopping) runs in LXD operations, which the caller's context
// bounds instead.
const requestTimeout = 30 * time.Second

// connect opens the connection cfg describes and returns it with a
// description of where it points, for messages.
func connect(ctx context.Context, cfg Config, conns *connTracker) (lxd.InstanceServer, string, error) {
	args := &lxd.ConnectionArgs{
		UserAgent:        "ephemera",
		HTTPClient:       &http.Client{Timeout: requestTimeout},
		TransportWrapper: conns.wrap,
	}
	// The client keeps the context it connects with for every later
	// request, so it must not end with the caller's start-up context.
	connCtx := context.WithoutCancel(ctx)

	if cfg.URL != "" {
		for _, f := range []struct {
			key  string
			path string
			dst  *string
		}{
			{"lxd.client_cert", cfg.ClientCert, &args.TLSClientCert},
			{"lxd.client_key", cfg.ClientKey, &args.TLSClientKey},
			{"lxd.server_cert", cfg.ServerCert, &args.TLSServerCert},
		} {
			if f.path == "" {
				if f.key == "lxd.server_cert" {
					continue // the system's CAs then vouch for the server
				}
				return nil, "", fmt.Errorf("lxd.url is set: %s is required", f.key)
			}
			b, err := os.ReadFile(f.path)
			if err != nil {
				return nil, "", fmt.Errorf("read %s: %w", f.key, err)
			}
			*f.dst = string(b)
		}
		srv, err := lxd.ConnectLXDWithContext(connCtx, cfg.URL, args)
		if err != nil {
			return nil, "", fmt.Errorf("connect to LXD at %s: %w", cfg.URL, err)
		}
		if info, _, err := srv.GetServer(); err != nil {
			return nil, "", fmt.Errorf("connect to LXD at %s: %w", cfg.URL, err)
		} else if info.Auth != "trusted" {
			return nil, "", fmt.Errorf("LXD at %s does not trust the client certificate %s (add it with lxc config trust add)", cfg.URL, cfg.ClientCert)
		}
		return srv, cfg.URL, nil
	}

	socket := cfg.Socket
	if socket == "" {
		var err error
		if socket, err = findSocket(SnapSocket, DebianSocket); err != nil {
			return nil, "", err
		}
	}
	srv, err := lxd.ConnectLXDUnixWithContext(connCtx, socket, args)
	if err != nil {
		return nil, "", fmt.Errorf("connect to LXD at %s (is the LXD daemon running?): %w", socket, err)
	}
	return srv, socket, nil
}

// findSocket returns the first of paths that exists.
func findSocket(paths ...string) (string, error) {
	for _, p := range paths {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		} else if !errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("LXD socket %s: %w", p, err)
		}
	}
	return "", fmt.Errorf("no LXD socket at %v: is LXD installed and running? (set lxd.socket or lxd.url)", paths)
}

// connTracker remembers the client's open connections so Close can end
// them: the LXD client keeps an event websocket open for up to a minute
// after its last operation and offers no way to close it.
type connTracker struct {
	mu     sync.Mutex
	conns  map[*trackedConn]struct{}
	closed bool
}

// wrap is the LXD client's TransportWrapper: every connection the client
// dials, the event websocket included, goes through track.
func (ct *connTracker) wrap(t *http.Transport) lxd.HTTPTransporter {
	dial := t.DialContext
	if dial == nil {
		dial = (&net.Dialer{Timeout: 10 * time.Second}).DialContext
	}
	t.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return ct.track(c)
	}
	return transporter{t}
}

func (ct *connTracker) track(c net.Conn) (net.Conn, error) {
	ct.mu.Lock()
	defer ct.mu.Unlock()
	if ct.closed {
		_ = c.Close()
		return nil, net.ErrClosed
	}
	if ct.conns == nil {
		ct.conns = make(map[*trackedConn]struct{})
	}
	tc := &trackedConn{Conn: c, ct: ct}
	ct.conns[tc] = struct{}{}
	return tc, nil
}

// closeAll closes every open connection and refuses new ones.
func (ct *connTracker) closeAll() {
	ct.mu.Lock()
	ct.closed = true
	conns := ct.conns
	ct.conns = nil
	ct.mu.Unlock()
	for c := range conns {
		_ = c.Conn.Close()
	}
}

type trackedConn struct {
	net.Conn
	ct   *connTracker
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.ct.mu.Lock()
		delete(c.ct.conns, c)
		c.ct.mu.Unlock()
	})
	return c.Conn.Close()
}

// transporter adapts an *http.Transport to lxd.HTTPTransporter.
type transporter struct{ t *http.Transport }

func (t transporter) RoundTrip(r *http.Request) (*http.Response, error) { return t.t.RoundTrip(r) }
func (t transporter) Transport() *http.Transport                        { return t.t }
