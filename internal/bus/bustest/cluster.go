package bustest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/ephemera-ci/ephemera/internal/bus"
)

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
)

// NATSServerBinary builds nats-server from the module ephemera already
// depends on (once per test process) and returns its path.
func NATSServerBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "ephemera-nats-server")
		if err != nil {
			buildErr = err
			return
		}
		buildPath = filepath.Join(dir, "nats-server")
		out, err := exec.Command("go", "build", "-o", buildPath, "github.com/nats-io/nats-server/v2").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build nats-server: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildPath
}

// Cluster is a NATS cluster of separate nats-server processes on loopback,
// each with JetStream on disk.
type Cluster struct {
	t     testing.TB
	bin   string
	dir   string
	ports []int // client ports
	// ClusterPorts are the nodes' route listeners.
	ClusterPorts []int
	procs        []*exec.Cmd
	mu           sync.Mutex

	// Set by StartSecureCluster: the CA, the client user and its password,
	// and the route user's password.
	PKI           *PKI
	User          string
	Password      string
	RoutePassword string
}

// StartCluster starts an n-node cluster, open and in the clear, and stops
// it at cleanup.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	c := newCluster(t, n)
	routes := make([]string, n)
	for i := range n {
		routes[i] = fmt.Sprintf("nats-route://127.0.0.1:%d", c.ClusterPorts[i])
	}
	for i := range n {
		conf := fmt.Sprintf(`server_name: n%d
listen: 127.0.0.1:%d
jetstream { store_dir: %q }
cluster { name: ephemera-test, listen: 127.0.0.1:%d, routes: [%s] }
`, i, c.ports[i], filepath.Join(c.dir, fmt.Sprint(i)), c.ClusterPorts[i], strings.Join(routes, ", "))
		c.writeConf(i, "node.conf", conf)
	}
	c.start()
	return c
}

func newCluster(t testing.TB, n int) *Cluster {
	c := &Cluster{t: t, bin: NATSServerBinary(t), dir: t.TempDir(), procs: make([]*exec.Cmd, n)}
	for range n {
		c.ports = append(c.ports, freePort(t))
		c.ClusterPorts = append(c.ClusterPorts, freePort(t))
	}
	return c
}

func (c *Cluster) start() {
	c.t.Helper()
	for i := range c.procs {
		c.Start(i)
	}
	c.t.Cleanup(func() {
		for i := range c.procs {
			c.Stop(i)
		}
	})
	c.WaitForJetStream()
}

func (c *Cluster) writeConf(i int, name, conf string) {
	c.t.Helper()
	if err := os.MkdirAll(filepath.Dir(c.confPath(i)), 0o700); err != nil {
		c.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(filepath.Dir(c.confPath(i)), name), []byte(conf), 0o600); err != nil {
		c.t.Fatal(err)
	}
}

func (c *Cluster) confPath(i int) string {
	return filepath.Join(c.dir, fmt.Sprintf("n%d", i), "node.conf")
}

func (c *Cluster) scheme() string {
	if c.PKI != nil {
		return "tls"
	}
	return "nats"
}

// URL is a client URL listing every node.
func (c *Cluster) URL() string {
	urls := make([]string, len(c.ports))
	for i := range c.ports {
		urls[i] = c.NodeURL(i)
	}
	return strings.Join(urls, ",")
}

// NodeURL is node i's client URL.
func (c *Cluster) NodeURL(i int) string {
	return fmt.Sprintf("%s://127.0.0.1:%d", c.scheme(), c.ports[i])
}

// BusConfig is how ephemera reaches the cluster: its URL and, for a
// secure cluster, the client TLS and credentials.
func (c *Cluster) BusConfig() bus.Config {
	cfg := bus.Config{URL: c.URL(), Log: zerolog.Nop()}
	if c.PKI != nil {
		cfg.TLS = c.PKI.ClientTLS()
		cfg.Auth = bus.Auth{User: c.User, Password: c.Password}
	}
	return cfg
}

// ConnectOptions are nats.go's options for BusConfig's TLS and credentials.
func (c *Cluster) ConnectOptions() []nats.Option {
	if c.PKI == nil {
		return nil
	}
	return []nats.Option{
		nats.RootCAs(c.PKI.CAFile),
		nats.ClientCert(c.PKI.ClientCert, c.PKI.ClientKey),
		nats.UserInfo(c.User, c.Password),
	}
}

// Start starts node i (again).
func (c *Cluster) Start(i int) {
	c.t.Helper()
	cmd := exec.Command(c.bin, "-c", c.confPath(i))
	log, err := os.Create(filepath.Join(c.dir, fmt.Sprintf("n%d.log", i)))
	if err != nil {
		c.t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	c.mu.Lock()
	c.procs[i] = cmd
	c.mu.Unlock()
	deadline := time.Now().Add(15 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", c.ports[i]), time.Second)
		if err == nil {
			conn.Close()
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("nats node %d not listening after 15s", i)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop stops node i gracefully (SIGTERM would be lame duck; SIGINT is a
// clean shutdown) and waits for it.
func (c *Cluster) Stop(i int) {
	c.mu.Lock()
	cmd := c.procs[i]
	c.procs[i] = nil
	c.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		cmd.Process.Kill()
		<-done
	}
}

// Restart stops node i and starts it again.
func (c *Cluster) Restart(i int) {
	c.Stop(i)
	c.Start(i)
}

// WaitForJetStream waits until the cluster has a JetStream meta leader.
func (c *Cluster) WaitForJetStream() {
	c.t.Helper()
	nc, err := nats.Connect(c.URL(), c.ConnectOptions()...)
	if err != nil {
		c.t.Fatal(err)
	}
	defer nc.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		js, _ := nc.JetStream()
		if _, err := js.AccountInfo(); err == nil {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatal("the NATS cluster has no JetStream leader after 30s")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
