package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeCertPair writes a self-signed certificate for 127.0.0.1 and its
// key (mode 0600) into dir.
func writeCertPair(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "policy"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "policy.crt"), filepath.Join(dir, "policy.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

func TestPolicyTLSIsCheckedAtLoad(t *testing.T) {
	dir := t.TempDir()
	cert, key := writeCertPair(t, dir)
	openKey := filepath.Join(dir, "open.key")
	b, _ := os.ReadFile(key)
	if err := os.WriteFile(openKey, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(openKey, 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, tls, wantKey, wantText string
	}{
		{"a certificate and its private key", "tls: { cert_file: " + cert + ", key_file: " + key + " }", "", ""},
		{"a certificate without a key", "tls: { cert_file: " + cert + " }", "policy.tls.key_file", "is required"},
		{"a key without a certificate", "tls: { key_file: " + key + " }", "policy.tls.cert_file", "is required"},
		{"a key readable by others", "tls: { cert_file: " + cert + ", key_file: " + openKey + " }", "policy.tls.key_file", "chmod 600"},
		{"a key that does not match", "tls: { cert_file: " + key + ", key_file: " + key + " }", "policy.tls.cert_file", "cannot load"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			secretsEnv(t)
			c, err := parseServe(t, strings.Replace(validDoc, "policy: {", "policy: { "+tc.tls+",", 1))
			if tc.wantKey == "" {
				if err != nil || !c.Policy.TLS.Enabled() {
					t.Fatalf("err = %v, want the TLS settings accepted", err)
				}
				return
			}
			var ke *KeyError
			if !errors.As(err, &ke) || ke.Key != tc.wantKey || !strings.Contains(err.Error(), tc.wantText) {
				t.Fatalf("err = %v, want a KeyError for %s saying %q", err, tc.wantKey, tc.wantText)
			}
		})
	}
}
