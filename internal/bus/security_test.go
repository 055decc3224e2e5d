package bus_test

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
	"github.com/rs/zerolog"

	"github.com/ephemera-ci/ephemera/internal/bus"
	"github.com/ephemera-ci/ephemera/internal/bus/bustest"
	"github.com/ephemera-ci/ephemera/internal/jobs"
)

// dial connects once, without retrying, as an attacker's client would.
func dial(url string, opts ...nats.Option) (*nats.Conn, error) {
	opts = append(opts, nats.Timeout(5*time.Second), nats.NoReconnect())
	return nats.Connect(url, opts...)
}

func TestTLSAndAuthEmbeddedServerRefusesAnonymousAndPlaintextClients(t *testing.T) {
	pki := bustest.NewPKI(t)
	password := bustest.Password(t)
	b, err := bus.Open(t.Context(), bus.Config{
		StoreDir: t.TempDir(),
		Listen:   "127.0.0.1:0",
		TLS:      pki.ServerTLS(),
		Auth:     bus.Auth{User: "ephemera", Password: password},
		Log:      zerolog.Nop(),
	})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer b.Close()
	// ephemera's own in-process connection authenticates and works.
	if err := b.Ready(t.Context()); err != nil {
		t.Fatalf("Ready over the in-process connection: %v", err)
	}
	url := b.ClientURL()
	hostPort := strings.TrimPrefix(url, "tls://")
	clientTLS := []nats.Option{nats.RootCAs(pki.CAFile), nats.ClientCert(pki.ClientCert, pki.ClientKey)}
	with := func(extra ...nats.Option) []nats.Option {
		return append(append([]nats.Option{}, clientTLS...), extra...)
	}

	refused := []struct {
		name string
		url  string
		opts []nats.Option
	}{
		{"an anonymous client with a valid client certificate", url, with()},
		{"a client with a wrong password", url, with(nats.UserInfo("ephemera", "guess"))},
		{"a client without a client certificate", url, []nats.Option{nats.RootCAs(pki.CAFile), nats.UserInfo("ephemera", password)}},
		{"a client that trusts another CA", url, []nats.Option{nats.RootCAs(pki.OtherCAFile), nats.ClientCert(pki.ClientCert, pki.ClientKey), nats.UserInfo("ephemera", password)}},
	}
	for _, tc := range refused {
		t.Run(tc.name+" is refused", func(t *testing.T) {
			nc, err := dial(tc.url, tc.opts...)
			if err == nil {
				// Some refusals arrive after CONNECT: show that nothing works.
				defer nc.Close()
				js, _ := jetstream.New(nc)
				if _, err := js.Stream(t.Context(), jobs.Stream); err == nil {
					t.Fatal("the client connected and read the job stream")
				}
			}
		})
	}
	t.Run("anonymous refusal is an authorization error", func(t *testing.T) {
		_, err := dial(url, with()...)
		if !errors.Is(err, nats.ErrAuthorization) {
			t.Errorf("err = %v, want %v", err, nats.ErrAuthorization)
		}
	})
	t.Run("a plaintext client with the right password is cut off", func(t *testing.T) {
		// nats.go upgrades to TLS by itself when the server asks, so speak
		// the protocol by hand, as a client that ignores tls_required would.
		conn, err := net.Dial("tcp", hostPort)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		r := bufio.NewReader(conn)
		info, err := r.ReadString('\n')
		if err != nil || !strings.Contains(info, `"tls_required":true`) {
			t.Fatalf("INFO = %q, %v; want tls_required", info, err)
		}
		fmt.Fprintf(conn, "CONNECT {\"verbose\":false,\"user\":\"ephemera\",\"pass\":%q}\r\nPUB %s 2\r\n{}\r\nPING\r\n", password, jobs.Subject("small", jobs.Queued))
		rest, err := io.ReadAll(r)
		if err == nil && strings.Contains(string(rest), "PONG") || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("the server answered a plaintext client: %q, %v", rest, err)
		}
	})
	t.Run("a client with TLS and the password reads the stream", func(t *testing.T) {
		c, err := bus.Open(t.Context(), bus.Config{URL: url, TLS: pki.ClientTLS(), Auth: bus.Auth{User: "ephemera", Password: password}, Log: zerolog.Nop()})
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		defer c.Close()
		if err := c.Ready(t.Context()); err != nil {
			t.Errorf("Ready: %v", err)
		}
	})
}

func TestEmbeddedServerTakesAnNkey(t *testing.T) {
	seed := func() string {
		kp, err := nkeys.CreateUser()
		if err != nil {
			t.Fatal(err)
		}
		s, _ := kp.Seed()
		return string(s)
	}
	mine, other := seed(), seed()
	b, err := bus.Open(t.Context(), bus.Config{StoreDir: t.TempDir(), Listen: "127.0.0.1:0", Auth: bus.Auth{NkeySeed: mine}, Log: zerolog.Nop()})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer b.Close()
	if err := b.Ready(t.Context()); err != nil {
		t.Fatalf("Ready over the in-process connection: %v", err)
	}
	for name, auth := range map[string]bus.Auth{"no credentials": {}, "another nkey": {NkeySeed: other}} {
		if nc, err := dial(b.ClientURL(), nkeyOption(t, auth.NkeySeed)...); !errors.Is(err, nats.ErrAuthorization) {
			if nc != nil {
				nc.Close()
			}
			t.Errorf("a client with %s: err = %v, want %v", name, err, nats.ErrAuthorization)
		}
	}
	c, err := bus.Open(t.Context(), bus.Config{URL: b.ClientURL(), Auth: bus.Auth{NkeySeed: mine}, Log: zerolog.Nop()})
	if err != nil {
		t.Fatalf("a client with the nkey: %v", err)
	}
	c.Close()
}

func nkeyOption(t *testing.T, seed string) []nats.Option {
	t.Helper()
	if seed == "" {
		return nil
	}
	kp, err := nkeys.FromSeed([]byte(seed))
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	return []nats.Option{nats.Nkey(pub, kp.Sign)}
}

func TestEmbeddedServerRefusesToListenBeyondLoopbackUnsecured(t *testing.T) {
	pki := bustest.NewPKI(t)
	auth := bus.Auth{User: "ephemera", Password: bustest.Password(t)}
	cases := []struct {
		name   string
		listen string
		tls    bus.TLS
		auth   bus.Auth
	}{
		{"every address, neither TLS nor auth", ":0", bus.TLS{}, bus.Auth{}},
		{"every address, TLS without auth", ":0", pki.ServerTLS(), bus.Auth{}},
		{"every address, auth without TLS", ":0", bus.TLS{}, auth},
		{"0.0.0.0, auth without TLS", "0.0.0.0:0", bus.TLS{}, auth},
		{"[::], TLS without auth", "[::]:0", pki.ServerTLS(), bus.Auth{}},
		{"a host name, neither", "example.invalid:0", bus.TLS{}, bus.Auth{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b, err := bus.Open(t.Context(), bus.Config{StoreDir: t.TempDir(), Listen: tc.listen, TLS: tc.tls, Auth: tc.auth, Log: zerolog.Nop()})
			if err == nil {
				b.Close()
			}
			if !errors.Is(err, bus.ErrExposedWithoutTLSAndAuth) {
				t.Errorf("Open(listen %q) = %v, want %v", tc.listen, err, bus.ErrExposedWithoutTLSAndAuth)
			}
		})
	}
	for _, listen := range []string{"127.0.0.1:0", "localhost:0"} {
		t.Run(listen+" may stay open", func(t *testing.T) {
			b, err := bus.Open(t.Context(), bus.Config{StoreDir: t.TempDir(), Listen: listen, Log: zerolog.Nop()})
			if err != nil {
				t.Fatalf("Open(listen %q): %v", listen, err)
			}
			b.Close()
		})
	}
}

func TestACredsFileNeedsAnExternalServer(t *testing.T) {
	_, err := bus.Open(t.Context(), bus.Config{StoreDir: t.TempDir(), Auth: bus.Auth{CredsFile: "/etc/ephemera/nats.creds"}, Log: zerolog.Nop()})
	if !errors.Is(err, bus.ErrCredsFileEmbedded) {
		t.Errorf("err = %v, want %v", err, bus.ErrCredsFileEmbedded)
	}
}

// TestTheClusterTemplateRefusesAnonymousClientsAndRoutes runs
// deploy/nats/node.conf's cluster and knocks on it without credentials:
// as a client, and as a route holding a certificate of the cluster's CA
// but not the route password.
func TestTheClusterTemplateRefusesAnonymousClientsAndRoutes(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs a three-node nats-server cluster")
	}
	c := bustest.StartSecureCluster(t, 3)
	tlsOpts := []nats.Option{nats.RootCAs(c.PKI.CAFile), nats.ClientCert(c.PKI.ClientCert, c.PKI.ClientKey)}
	if nc, err := dial(c.NodeURL(0), tlsOpts...); !errors.Is(err, nats.ErrAuthorization) {
		if nc != nil {
			nc.Close()
		}
		t.Errorf("an anonymous client: err = %v, want %v", err, nats.ErrAuthorization)
	}
	if nc, err := dial(c.NodeURL(0), nats.RootCAs(c.PKI.CAFile), nats.UserInfo(c.User, c.Password)); err == nil {
		nc.Close()
		t.Error("a client without a client certificate connected")
	}
	nc, err := dial(c.NodeURL(0), append(tlsOpts, nats.UserInfo(c.User, c.Password))...)
	if err != nil {
		t.Fatalf("a client with its certificate and password: %v", err)
	}
	nc.Close()

	answer := routeConnect(t, c.PKI, c.ClusterPorts[0], "")
	if !strings.HasPrefix(answer, "-ERR 'Authorization Violation'") {
		t.Errorf("a route without the password was answered %q, want an authorization violation", answer)
	}
	answer = routeConnect(t, c.PKI, c.ClusterPorts[0], `"user":"route","pass":"guess",`)
	if !strings.HasPrefix(answer, "-ERR 'Authorization Violation'") {
		t.Errorf("a route with a wrong password was answered %q, want an authorization violation", answer)
	}
}

// routeConnect dials a route listener with TLS and a CA-signed
// certificate, reads its INFO, sends a route CONNECT (with creds, a JSON fragment) and a
// PING, and returns the first line of the answer.
func routeConnect(t *testing.T, pki *bustest.PKI, port int, creds string) string {
	t.Helper()
	conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	ca, err := os.ReadFile(pki.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca)
	cert, err := tls.LoadX509KeyPair(pki.ClientCert, pki.ClientKey)
	if err != nil {
		t.Fatal(err)
	}
	tc := tls.Client(conn, &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{cert}, ServerName: "127.0.0.1"})
	if err := tc.Handshake(); err != nil { // routes speak TLS first
		t.Fatalf("TLS handshake with the route listener: %v", err)
	}
	r := bufio.NewReader(tc)
	if info, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(info, "INFO ") {
		t.Fatalf("route INFO = %q, %v", info, err)
	}
	fmt.Fprintf(tc, "CONNECT {%s\"verbose\":false,\"pedantic\":false,\"tls_required\":true,\"name\":\"rogue\",\"cluster\":\"ephemera\"}\r\nPING\r\n", creds)
	line, err := r.ReadString('\n')
	if err != nil && line == "" {
		return "closed: " + err.Error()
	}
	return line
}
