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
	procs []*exec.Cmd
	mu    sync.Mutex
}

// StartCluster starts an n-node cluster and stops it at cleanup.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	c := &Cluster{t: t, bin: NATSServerBinary(t), dir: t.TempDir(), procs: make([]*exec.Cmd, n)}
	routes := make([]string, n)
	clusterPorts := make([]int, n)
	for i := range n {
		c.ports = append(c.ports, freePort(t))
		clusterPorts[i] = freePort(t)
		routes[i] = fmt.Sprintf("nats-route://127.0.0.1:%d", clusterPorts[i])
	}
	for i := range n {
		conf := fmt.Sprintf(`server_name: n%d
listen: 127.0.0.1:%d
jetstream { store_dir: %q }
cluster { name: ephemera-test, listen: 127.0.0.1:%d, routes: [%s] }
`, i, c.ports[i], filepath.Join(c.dir, fmt.Sprint(i)), clusterPorts[i], strings.Join(routes, ", "))
		if err := os.WriteFile(c.confPath(i), []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		c.Start(i)
	}
	t.Cleanup(func() {
		for i := range n {
			c.Stop(i)
		}
	})
	c.WaitForJetStream()
	return c
}

func (c *Cluster) confPath(i int) string { return filepath.Join(c.dir, fmt.Sprintf("n%d.conf", i)) }

// URL is a client URL listing every node.
func (c *Cluster) URL() string {
	urls := make([]string, len(c.ports))
	for i, p := range c.ports {
		urls[i] = fmt.Sprintf("nats://127.0.0.1:%d", p)
	}
	return strings.Join(urls, ",")
}

// NodeURL is node i's client URL.
func (c *Cluster) NodeURL(i int) string { return fmt.Sprintf("nats://127.0.0.1:%d", c.ports[i]) }

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
	nc, err := nats.Connect(c.URL())
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
