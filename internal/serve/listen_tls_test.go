package serve

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/go-chi/chi/v5"
	"github.com/rs/zerolog"

	"github.com/ephemera-ci/ephemera/internal/config"
)

// TestPolicyListenerServesTLS: with policy.tls set, the listener speaks
// HTTPS with the configured certificate, and refuses plain HTTP.
func TestPolicyListenerServesTLS(t *testing.T) {
	// httptest's certificate (for 127.0.0.1) as the configured pair.
	ts := httptest.NewTLSServer(http.NotFoundHandler())
	certPEM, keyPEM := ts.Certificate(), ts.TLS.Certificates[0]
	ts.Close()
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "policy.crt"), filepath.Join(dir, "policy.key")
	writePEMPair(t, certFile, keyFile, certPEM, keyPEM)

	p := &Process{log: zerolog.Nop()}
	r := chi.NewRouter()
	withHealth(r, func(context.Context) error { return nil }, zerolog.Nop())
	if err := p.addListenerTLS("policy", "127.0.0.1:0", r, config.ListenerTLS{CertFile: certFile, KeyFile: keyFile}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- p.runners[0](ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	pool := x509.NewCertPool()
	pool.AddCert(certPEM)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := client.Get("https://" + p.addrs["policy"] + "/healthz")
	if err != nil {
		t.Fatalf("https: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.TLS == nil {
		t.Errorf("https /healthz: %d (TLS %v), want 200 over TLS", resp.StatusCode, resp.TLS != nil)
	}
	resp, err = http.Get("http://" + p.addrs["policy"] + "/healthz")
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Errorf("plain http /healthz answered 200 on a TLS listener")
		}
	}
}

func writePEMPair(t *testing.T, certFile, keyFile string, cert *x509.Certificate, pair tls.Certificate) {
	t.Helper()
	kb, err := x509.MarshalPKCS8PrivateKey(pair.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pemBlock("CERTIFICATE", cert.Raw), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pemBlock("PRIVATE KEY", kb), 0o600); err != nil {
		t.Fatal(err)
	}
}

func pemBlock(typ string, b []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b})
}
