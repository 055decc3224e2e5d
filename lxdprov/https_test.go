package lxdprov_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/canonical/lxd/shared/api"

	"github.com/ephemera-ci/ephemera/lxdprov"
	"github.com/ephemera-ci/ephemera/lxdprov/lxdtest"
)

func TestConnectsOverHTTPSWithAClientCertificate(t *testing.T) {
	t.Parallel()
	cfg, _ := httpsConfig(t)
	pool := cfg.Pools[0]
	p := lxdtest.New(t, cfg)
	spec := lxdtest.Spec(pool.Name)
	if err := p.Create(t.Context(), spec); err != nil {
		t.Fatalf("Create over HTTPS: %v", err)
	}
	insts, err := p.List(t.Context())
	if err != nil || len(insts) != 1 || insts[0].Name != spec.Name {
		t.Fatalf("List over HTTPS = %v, %v; want %s", insts, err, spec.Name)
	}
	if err := p.Delete(t.Context(), spec.Name); err != nil {
		t.Fatalf("Delete over HTTPS: %v", err)
	}

	t.Run("an untrusted certificate is refused at start", func(t *testing.T) {
		cfg, fingerprint := httpsConfig(t)
		if err := lxdtest.Client(t).DeleteCertificate(fingerprint); err != nil {
			t.Fatal(err)
		}
		if _, err := lxdprov.New(t.Context(), cfg); err == nil || !strings.Contains(err.Error(), "does not trust") {
			t.Errorf("New = %v, want an error saying LXD does not trust the certificate", err)
		}
	})
	t.Run("a missing client key is named", func(t *testing.T) {
		c := cfg
		c.ClientKey = ""
		if _, err := lxdprov.New(t.Context(), c); err == nil || !strings.Contains(err.Error(), "lxd.client_key") {
			t.Errorf("New = %v, want an error naming lxd.client_key", err)
		}
	})
}

// httpsConfig returns a provider config for one test pool that reaches LXD
// over its HTTPS listener with a fresh client certificate, which LXD
// trusts until the test ends; and that certificate's fingerprint.
func httpsConfig(t *testing.T) (lxdprov.Config, string) {
	t.Helper()
	client := lxdtest.Client(t)
	srv, _, err := client.GetServer()
	if err != nil {
		t.Fatal(err)
	}
	addr, _ := srv.Config["core.https_address"].(string)
	if addr == "" {
		msg := "LXD has no HTTPS listener (core.https_address; make lxd-dev sets one)"
		if os.Getenv(lxdtest.EnvRequire) == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	if strings.HasPrefix(addr, ":") || strings.HasPrefix(addr, "[::]") || strings.HasPrefix(addr, "0.0.0.0") {
		addr = "127.0.0.1:" + addr[strings.LastIndex(addr, ":")+1:]
	}

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "ephemera-test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name, typ string, b []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	pool := lxdtest.Pool()
	err = client.CreateCertificate(api.CertificatesPost{
		Name: "ephemera-test-" + pool.Name, Type: "client", Certificate: base64.StdEncoding.EncodeToString(der),
	})
	if err != nil {
		t.Fatalf("trust the test client certificate: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	fingerprint := certFingerprint(cert)
	t.Cleanup(func() { _ = client.DeleteCertificate(fingerprint) })

	serverCert := filepath.Join(dir, "server.crt")
	if err := os.WriteFile(serverCert, []byte(srv.Environment.Certificate), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := lxdtest.Config(t, pool)
	cfg.Socket = ""
	cfg.URL = "https://" + addr
	cfg.ClientCert = write("client.crt", "CERTIFICATE", der)
	cfg.ClientKey = write("client.key", "EC PRIVATE KEY", keyDER)
	cfg.ServerCert = serverCert
	return cfg, fingerprint
}

func certFingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}
