package main

import (
	"bytes"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ephemera-ci/ephemera/e2e/e2etest"
	"github.com/ephemera-ci/ephemera/internal/bus/bustest"
	"github.com/ephemera-ci/ephemera/internal/cli"
	"github.com/ephemera-ci/ephemera/lxdprov/lxdtest"
)

func TestAnEmbeddedNATSOpenBeyondLoopbackIsRefused(t *testing.T) {
	t.Setenv("EPHEMERA_POLICY_ADMIN_TOKEN", "s3cr3t-admin-value-0123456789abcdef")
	t.Setenv("EPHEMERA_GITHUB_TOKEN", "s3cr3t-github-value")
	pki := bustest.NewPKI(t)
	pwFile := filepath.Join(t.TempDir(), "nats-password")
	if err := os.WriteFile(pwFile, []byte("s3cr3t-nats-value\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	user := "user: ephemera, password_file: " + pwFile
	withNATS := func(nats string) string {
		return writeConfig(t, strings.Replace(checkConfig, "nats: { store_dir: STORE }", "nats: { store_dir: STORE, "+nats+" }", 1))
	}
	secured := `tls: { cert_file: ` + pki.ServerCert + `, key_file: ` + pki.ServerKey + ` }, ` + user
	for _, listen := range []string{":4222", "0.0.0.0:4222", "[::]:4222", "nats.example:4222"} {
		open := withNATS(`listen: "` + listen + `"`)
		tlsOnly := withNATS(`listen: "` + listen + `", tls: { cert_file: ` + pki.ServerCert + `, key_file: ` + pki.ServerKey + ` }`)
		authOnly := withNATS(`listen: "` + listen + `", ` + user)
		for name, cfg := range map[string]string{"neither TLS nor auth": open, "TLS only": tlsOnly, "auth only": authOnly} {
			for _, cmd := range [][]string{{"config", "check"}, {"serve"}} {
				t.Run(strings.Join(cmd, " ")+" "+listen+" "+name, func(t *testing.T) {
					var out, errb bytes.Buffer
					code := run(t.Context(), append(cmd, "--config", cfg), &out, &errb)
					if code != cli.ExitUsage {
						t.Errorf("exit %d, want %d (stderr %q)", code, cli.ExitUsage, errb.String())
					}
					if msg := errb.String(); !strings.HasPrefix(msg, "ephemera: config: nats.listen: ") || strings.Count(msg, "\n") != 1 {
						t.Errorf("stderr %q, want one line naming nats.listen", msg)
					}
				})
			}
		}
		t.Run("config check "+listen+" with TLS and auth", func(t *testing.T) {
			var out, errb bytes.Buffer
			if code := run(t.Context(), []string{"config", "check", "--config", withNATS(`listen: "` + listen + `", ` + secured)}, &out, &errb); code != cli.ExitOK {
				t.Errorf("exit %d, want 0 (stderr %q)", code, errb.String())
			}
		})
	}
	var out, errb bytes.Buffer
	if code := run(t.Context(), []string{"config", "check", "--config", withNATS(`listen: "127.0.0.1:4222"`)}, &out, &errb); code != cli.ExitOK {
		t.Errorf("config check of a loopback listener without TLS or auth: exit %d, want 0 (stderr %q)", code, errb.String())
	}
}

// TestServeRequiresTLSAndAuthOnItsNATSListener runs `ephemera serve` with
// its embedded NATS exposed over TLS with a password: its own in-process
// connection works, `ephemera status` reaches it with the same settings,
// and a client without the password is refused.
func TestServeRequiresTLSAndAuthOnItsNATSListener(t *testing.T) {
	lxdtest.Require(t) // serve runs the scaler, which needs LXD
	pki := bustest.NewPKI(t)
	password := bustest.Password(t)
	pwFile := filepath.Join(t.TempDir(), "nats-password")
	if err := os.WriteFile(pwFile, []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	web, natsAddr, ready := e2etest.FreePort(t), e2etest.FreePort(t), e2etest.FreePort(t)
	natsCfg := `nats: { store_dir: STORE, listen: "` + natsAddr + `", user: ephemera, password_file: ` + pwFile +
		`, tls: { ca_file: ` + pki.CAFile + `, cert_file: ` + pki.ServerCert + `, key_file: ` + pki.ServerKey + ` } }`
	doc := strings.NewReplacer(
		"name: small", "name: "+lxdtest.Pool().Name,
		`webhook: { listen: "127.0.0.1:0"`, `webhook: { listen: "`+web+`"`,
		`metrics: { listen: "127.0.0.1:0" }`, `metrics: { listen: "`+ready+`" }`,
		`nats: { store_dir: STORE }`, natsCfg,
	).Replace(checkConfig)
	cfg := writeConfig(t, doc)
	p := startServe(t, cfg, "http://"+ready+"/readyz")
	defer p.stop(t)
	if code := delivery(t, "http://"+web+"/webhook", "over-the-in-process-connection", 1); code != http.StatusAccepted {
		t.Fatalf("a delivery answered %d: the in-process connection does not publish\n%s", code, p.stderr)
	}

	var out, errb bytes.Buffer
	if code := run(t.Context(), []string{"status", "--config", cfg, "-o", "json"}, &out, &errb); code != cli.ExitOK {
		t.Errorf("status with the configured TLS and password: exit %d: %s", code, errb.String())
	}

	tlsOpts := []nats.Option{nats.RootCAs(pki.CAFile), nats.ClientCert(pki.ClientCert, pki.ClientKey), nats.Timeout(5 * time.Second), nats.NoReconnect()}
	if nc, err := nats.Connect("tls://"+natsAddr, tlsOpts...); !errors.Is(err, nats.ErrAuthorization) {
		if nc != nil {
			nc.Close()
		}
		t.Errorf("an anonymous TLS client: err = %v, want %v", err, nats.ErrAuthorization)
	}
	nc, err := nats.Connect("tls://"+natsAddr, append(tlsOpts, nats.UserInfo("ephemera", password))...)
	if err != nil {
		t.Fatalf("a client with TLS and the password: %v", err)
	}
	nc.Close()
	if strings.Contains(p.stderr.String(), password) || strings.Contains(p.stderr.String(), "s3cr3t") {
		t.Error("a secret appears in the logs")
	}
}
