package bustest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ephemera-ci/ephemera/internal/bus"
)

// PKI is a throw-away certificate authority made for one test, with a
// server certificate for 127.0.0.1 and localhost and a client
// certificate, written as PEM files in a temporary directory.
type PKI struct {
	CAFile                string
	ServerCert, ServerKey string
	ClientCert, ClientKey string
	OtherCAFile           string // a second CA that signed none of them
	dir                   string
}

// NewPKI makes a CA and its server and client certificates, valid for
// one hour.
func NewPKI(t testing.TB) PKI {
	t.Helper()
	p := PKI{dir: t.TempDir()}
	caKey, caCert := p.ca(t, "ephemera test CA", "ca")
	p.CAFile = filepath.Join(p.dir, "ca.pem")
	p.ServerCert, p.ServerKey = p.leaf(t, caKey, caCert, "server", x509.ExtKeyUsageServerAuth)
	p.ClientCert, p.ClientKey = p.leaf(t, caKey, caCert, "client", x509.ExtKeyUsageClientAuth)
	p.ca(t, "another CA", "other-ca")
	p.OtherCAFile = filepath.Join(p.dir, "other-ca.pem")
	return p
}

// ServerTLS is the embedded server's TLS: its certificate, and client
// certificates required and verified against the CA.
func (p PKI) ServerTLS() bus.TLS {
	return bus.TLS{CAFile: p.CAFile, CertFile: p.ServerCert, KeyFile: p.ServerKey}
}

// ClientTLS is a client's TLS: the server verified against the CA, the
// client certificate presented.
func (p PKI) ClientTLS() bus.TLS {
	return bus.TLS{CAFile: p.CAFile, CertFile: p.ClientCert, KeyFile: p.ClientKey}
}

func (p PKI) ca(t testing.TB, cn, name string) (*ecdsa.PrivateKey, *x509.Certificate) {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Minute),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, filepath.Join(p.dir, name+".pem"), "CERTIFICATE", der)
	return key, cert
}

func (p PKI) leaf(t testing.TB, caKey *ecdsa.PrivateKey, ca *x509.Certificate, name string, usage x509.ExtKeyUsage) (certFile, keyFile string) {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: serial(t),
		Subject:      pkix.Name{CommonName: "ephemera test " + name},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	if usage == x509.ExtKeyUsageServerAuth {
		// nats-server presents its certificate on routes as a client too.
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(p.dir, name+".pem"), filepath.Join(p.dir, name+"-key.pem")
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "PRIVATE KEY", kder)
	return certFile, keyFile
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func serial(t testing.TB) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func writePEM(t testing.TB, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// Password is a random password for a test's NATS user.
func Password(t testing.TB) string {
	t.Helper()
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
