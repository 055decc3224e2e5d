package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nkeys"

	"github.com/ephemera-ci/ephemera/internal/bus/bustest"
)

// natsDoc is validDoc with its nats section replaced.
func natsDoc(nats string) string {
	return strings.Replace(validDoc, "nats: { store_dir: /tmp/ephemera-nats }", "nats: "+nats, 1)
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func userSeed(t *testing.T) string {
	t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	s, _ := kp.Seed()
	return string(s)
}

func TestNATSSecurityValidation(t *testing.T) {
	secretsEnv(t)
	pki := bustest.NewPKI(t)
	password := writeFile(t, "nats-password", "s3cret-but-long-enough\n")
	seed := writeFile(t, "nats.nk", userSeed(t)+"\n")
	accountKP, _ := nkeys.CreateAccount()
	accountSeed, _ := accountKP.Seed()
	notUserSeed := writeFile(t, "account.nk", string(accountSeed))
	garbage := writeFile(t, "garbage", "not a seed")
	tlsOK := `tls: { cert_file: ` + pki.ServerCert + `, key_file: ` + pki.ServerKey + `, ca_file: ` + pki.CAFile + ` }`
	userOK := `user: ephemera, password_file: ` + password
	cases := []struct {
		name    string
		nats    string
		wantKey string // empty: valid
	}{
		{"an embedded server on every address without TLS or auth", `{ store_dir: /tmp/n, listen: ":4222" }`, "nats.listen"},
		{"an embedded server on 0.0.0.0 with auth but no TLS", `{ store_dir: /tmp/n, listen: "0.0.0.0:4222", ` + userOK + ` }`, "nats.listen"},
		{"an embedded server on every address with TLS but no auth", `{ store_dir: /tmp/n, listen: ":4222", ` + tlsOK + ` }`, "nats.listen"},
		{"an embedded server on a host name without TLS or auth", `{ store_dir: /tmp/n, listen: "nats.example:4222" }`, "nats.listen"},
		{"an embedded server on every address with TLS and a password", `{ store_dir: /tmp/n, listen: ":4222", ` + tlsOK + `, ` + userOK + ` }`, ""},
		{"an embedded server on every address with TLS and an nkey", `{ store_dir: /tmp/n, listen: ":4222", ` + tlsOK + `, nkey_seed_file: ` + seed + ` }`, ""},
		{"an embedded server on loopback without TLS or auth", `{ store_dir: /tmp/n, listen: "127.0.0.1:4222" }`, ""},
		{"an embedded server on localhost without TLS or auth", `{ store_dir: /tmp/n, listen: "localhost:4222" }`, ""},
		{"an embedded server with a creds file", `{ store_dir: /tmp/n, creds_file: /etc/ephemera/nats.creds }`, "nats.creds_file"},
		{"an embedded server with a CA but no certificate", `{ store_dir: /tmp/n, listen: "127.0.0.1:4222", tls: { ca_file: ` + pki.CAFile + ` } }`, "nats.tls.cert_file"},
		{"a user without a password", `{ url: "tls://127.0.0.1:4222", user: ephemera }`, "nats.password_file"},
		{"a password without a user", `{ url: "tls://127.0.0.1:4222", password_file: ` + password + ` }`, "nats.user"},
		{"a password file that does not exist", `{ url: "tls://127.0.0.1:4222", user: ephemera, password_file: /nonexistent/pw }`, "nats.password_file"},
		{"a creds file and a password", `{ url: "tls://127.0.0.1:4222", creds_file: /etc/n.creds, ` + userOK + ` }`, "nats.creds_file"},
		{"a password and an nkey", `{ url: "tls://127.0.0.1:4222", ` + userOK + `, nkey_seed_file: ` + seed + ` }`, "nats.nkey_seed_file"},
		{"an nkey seed that is not one", `{ url: "tls://127.0.0.1:4222", nkey_seed_file: ` + garbage + ` }`, "nats.nkey_seed_file"},
		{"an account seed instead of a user's", `{ url: "tls://127.0.0.1:4222", nkey_seed_file: ` + notUserSeed + ` }`, "nats.nkey_seed_file"},
		{"a certificate without its key", `{ url: "tls://127.0.0.1:4222", tls: { cert_file: ` + pki.ClientCert + ` } }`, "nats.tls.key_file"},
		{"a key without its certificate", `{ url: "tls://127.0.0.1:4222", tls: { key_file: ` + pki.ClientKey + ` } }`, "nats.tls.cert_file"},
		{"a certificate with another's key", `{ url: "tls://127.0.0.1:4222", tls: { cert_file: ` + pki.ClientCert + `, key_file: ` + pki.ServerKey + ` } }`, "nats.tls.cert_file"},
		{"a CA file that holds no certificate", `{ url: "tls://127.0.0.1:4222", tls: { ca_file: ` + garbage + ` } }`, "nats.tls.ca_file"},
		{"a CA file that does not exist", `{ url: "tls://127.0.0.1:4222", tls: { ca_file: /nonexistent/ca.pem } }`, "nats.tls.ca_file"},
		{"an unknown tls key", `{ url: "tls://127.0.0.1:4222", tls: { ca: x } }`, "nats.tls.ca"},
		{"a client with TLS, a client certificate and a password", `{ url: "tls://127.0.0.1:4222", ` + userOK + `, tls: { ca_file: ` + pki.CAFile + `, cert_file: ` + pki.ClientCert + `, key_file: ` + pki.ClientKey + ` } }`, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseServe(t, natsDoc(tc.nats))
			if tc.wantKey == "" {
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				return
			}
			var ke *KeyError
			if !errors.As(err, &ke) || ke.Key != tc.wantKey {
				t.Fatalf("err = %v, want a KeyError for %s", err, tc.wantKey)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q is more than one line", err)
			}
		})
	}
}

func TestNATSSecretsComeFromFilesOrTheEnvironment(t *testing.T) {
	secretsEnv(t)
	password := writeFile(t, "nats-password", "  from-the-file \n")
	seedValue := userSeed(t)
	seed := writeFile(t, "nats.nk", seedValue+"\n")
	c, err := parseServe(t, natsDoc(`{ url: "nats://127.0.0.1:4222", user: ephemera, password_file: `+password+` }`))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Secrets.NATSPassword.Reveal(); got != "from-the-file" {
		t.Errorf("password = %q, want the file's, trimmed", got)
	}
	if !c.NATSAuthenticates() {
		t.Error("NATSAuthenticates() = false with a user and password")
	}
	c, err = parseServe(t, natsDoc(`{ url: "nats://127.0.0.1:4222", nkey_seed_file: `+seed+` }`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Secrets.NATSNkeySeed.Reveal() != seedValue {
		t.Error("nkey seed not read from its file")
	}

	t.Setenv(EnvNATSPassword, "from-the-env")
	c, err = parseServe(t, natsDoc(`{ url: "nats://127.0.0.1:4222", user: ephemera, password_file: /nonexistent/pw }`))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Secrets.NATSPassword.Reveal(); got != "from-the-env" {
		t.Errorf("password = %q, want the environment's", got)
	}
}

func TestTheNATSPasswordIsNeverInTheYAML(t *testing.T) {
	secretsEnv(t)
	_, err := parseServe(t, natsDoc(`{ url: "nats://127.0.0.1:4222", user: ephemera, password: hunter2 }`))
	var ke *KeyError
	if !errors.As(err, &ke) || ke.Key != "nats.password" {
		t.Fatalf("err = %v, want a KeyError for nats.password", err)
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Errorf("error %q repeats the password", err)
	}
}

func TestAStatusClientNeedsNoListenCheck(t *testing.T) {
	secretsEnv(t)
	// `ephemera status` reads a config whose embedded server listens on
	// every address; it starts no server, so only `serve` refuses it.
	doc := strings.ReplaceAll(natsDoc(`{ store_dir: /tmp/n, listen: ":4222" }`), "  token_file: TOKEN_FILE\n", "")
	if _, err := Parse([]byte(doc), RoleClient); err != nil {
		t.Errorf("Parse for the status client: %v", err)
	}
}
