package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ephemera-ci/ephemera/e2e/e2etest"
	"github.com/ephemera-ci/ephemera/internal/jobs"
	"github.com/ephemera-ci/ephemera/lxdprov/lxdtest"
)

// binary is the ephemera command built once for the process-level tests.
var binary string

func TestMain(m *testing.M) { e2etest.MainWithCommand(m, "./cmd/ephemera", &binary) }

// serveProc is one `ephemera serve` process.
type serveProc struct {
	cmd    *exec.Cmd
	stderr *e2etest.SyncBuffer
	done   chan error
}

func startServe(t *testing.T, cfgPath string, readyURL string) *serveProc {
	t.Helper()
	p := &serveProc{cmd: exec.Command(binary, "serve", "--config", cfgPath), stderr: &e2etest.SyncBuffer{}, done: make(chan error, 1)}
	p.cmd.Stderr = p.stderr
	p.cmd.Env = append(os.Environ(), "EPHEMERA_POLICY_ADMIN_TOKEN=s3cr3t-admin-value-0123456789abcdef", "EPHEMERA_GITHUB_TOKEN=s3cr3t-gh")
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			p.cmd.Process.Kill()
			<-p.done
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(readyURL)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		select {
		case err := <-p.done:
			t.Fatalf("ephemera serve exited before ready: %v\n%s", err, p.stderr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("ephemera serve not ready after 30s\n%s", p.stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop sends SIGTERM and requires a clean exit.
func (p *serveProc) stop(t *testing.T) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		if err != nil {
			t.Fatalf("ephemera serve exited with %v after SIGTERM\n%s", err, p.stderr)
		}
	case <-time.After(40 * time.Second):
		t.Fatalf("ephemera serve did not stop after SIGTERM\n%s", p.stderr)
	}
}

const secret = "s3cr3t-webhook-value-0123456789abcdef"

func delivery(t *testing.T, url string, id string, jobID int) int {
	body := fmt.Sprintf(`{"action":"queued","workflow_job":{"id":%d,"run_id":1,"run_attempt":1,"labels":["self-hosted","small"],"status":"queued","created_at":"2026-11-27T10:00:00Z"},"repository":{"full_name":"acme/app","owner":{"login":"acme"}},"installation":{"id":7}}`, jobID)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(body))
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-GitHub-Event", "workflow_job")
	req.Header.Set("X-GitHub-Delivery", id)
	req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(mac.Sum(nil)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestServeKeepsAcceptedDeliveriesAcrossRestart checks invariant 1 across a
// SIGTERM: every delivery answered 202 while the process was stopping is in
// the stream after a restart, because listeners finish in-flight publishes
// before NATS is drained, and JetStream keeps the stream on disk.
func TestServeKeepsAcceptedDeliveriesAcrossRestart(t *testing.T) {
	lxdtest.Require(t) // serve runs the scaler, which needs LXD
	web, natsAddr, ready := e2etest.FreePort(t), e2etest.FreePort(t), e2etest.FreePort(t)
	doc := strings.NewReplacer(
		"name: small", "name: "+lxdtest.Pool().Name,
		`webhook: { listen: "127.0.0.1:0"`, `webhook: { listen: "`+web+`"`,
		`metrics: { listen: "127.0.0.1:0" }`, `metrics: { listen: "`+ready+`" }`,
		`nats: { store_dir: STORE }`, `nats: { store_dir: STORE, listen: "`+natsAddr+`" }`,
	).Replace(checkConfig)
	cfg := writeConfig(t, doc)
	readyURL := "http://" + ready + "/readyz"
	hookURL := "http://" + web + "/webhook"

	p := startServe(t, cfg, readyURL)
	if code := delivery(t, hookURL, "before-restart", 1); code != http.StatusAccepted {
		t.Fatalf("first delivery answered %d\n%s", code, p.stderr)
	}

	// Deliveries in flight while SIGTERM arrives.
	var mu sync.Mutex
	var accepted []string
	var wg sync.WaitGroup
	for c := 0; c < 8; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				id := fmt.Sprintf("d-%d-%d", c, i)
				code := delivery(t, hookURL, id, 1000*c+i)
				if code == http.StatusAccepted {
					mu.Lock()
					accepted = append(accepted, id)
					mu.Unlock()
				} else if code == 0 {
					return // the listener is closed
				}
			}
		}()
	}
	time.Sleep(100 * time.Millisecond)
	p.stop(t)
	wg.Wait()
	if len(accepted) == 0 {
		t.Fatal("no delivery was accepted before the stop; the test proves nothing")
	}

	p = startServe(t, cfg, readyURL)
	defer p.stop(t)
	nc, err := nats.Connect("nats://" + natsAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := nc.JetStream()
	sub, err := js.SubscribeSync(jobs.SubjectAll, nats.OrderedConsumer())
	if err != nil {
		t.Fatal(err)
	}
	si, err := js.StreamInfo(jobs.Stream)
	if err != nil {
		t.Fatal(err)
	}
	stored := map[string]bool{}
	for range si.State.Msgs {
		m, err := sub.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		stored[m.Header.Get(nats.MsgIdHdr)] = true
	}
	if !stored["before-restart"] {
		t.Error("the delivery stored before the restart is gone")
	}
	for _, id := range accepted {
		if !stored[id] {
			t.Errorf("delivery %s was answered 202 but is not in the stream after restart", id)
		}
	}
	t.Logf("%d deliveries accepted around the SIGTERM, %d messages stored", len(accepted), len(stored))
	if strings.Contains(p.stderr.String(), "s3cr3t") {
		t.Error("a secret appears in the logs")
	}
}
