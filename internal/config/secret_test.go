package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSecretFileOpenToOthersIsRefused: like ssh with a private key, a
// secret file that users other than its owner may read (or write) is
// refused, and the error names the key and the file.
func TestSecretFileOpenToOthersIsRefused(t *testing.T) {
	for _, mode := range []os.FileMode{0o644, 0o640, 0o604, 0o620} {
		t.Run(mode.String(), func(t *testing.T) {
			secretsEnv(t)
			os.Unsetenv(EnvWebhookSecret)
			file := filepath.Join(t.TempDir(), "webhook-secret")
			if err := os.WriteFile(file, []byte(testWebhookSecret+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(file, mode); err != nil {
				t.Fatal(err)
			}
			doc := strings.Replace(validDoc, "max_body: 1MiB", "max_body: 1MiB, secret_file: "+file, 1)
			_, err := parseServe(t, doc)
			var ke *KeyError
			if !errors.As(err, &ke) || ke.Key != "webhook.secret_file" || !strings.Contains(err.Error(), file) || !strings.Contains(err.Error(), "chmod 600") {
				t.Fatalf("mode %v: err = %v, want a KeyError for webhook.secret_file naming %s and how to fix it", mode, err, file)
			}
			if strings.Contains(err.Error(), testWebhookSecret) {
				t.Errorf("the error leaks the secret: %v", err)
			}
			if err := os.Chmod(file, 0o400); err != nil {
				t.Fatal(err)
			}
			if _, err := parseServe(t, doc); err != nil {
				t.Errorf("mode 0400: %v, want it accepted", err)
			}
		})
	}
}

// TestShortSecretsAreRefused: a webhook secret (any of the file's lines,
// or the environment's) or a policy admin token under 32 bytes is
// refused, naming the key and where the secret came from.
func TestShortSecretsAreRefused(t *testing.T) {
	short := strings.Repeat("s", MinSecretLen-1)
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cases := []struct {
		name, key, where string
		setup            func(t *testing.T) string // returns the document
	}{
		{"a short webhook secret in the environment", "webhook.secret_file", EnvWebhookSecret, func(t *testing.T) string {
			t.Setenv(EnvWebhookSecret, short)
			return validDoc
		}},
		{"a short second line of the webhook secret file", "webhook.secret_file", "line 2", func(t *testing.T) string {
			os.Unsetenv(EnvWebhookSecret)
			f := write("wh", testWebhookSecret+"\n"+short+"\n")
			return strings.Replace(validDoc, "max_body: 1MiB", "max_body: 1MiB, secret_file: "+f, 1)
		}},
		{"a short admin token in the environment", "policy.admin_token_file", EnvPolicyAdminToken, func(t *testing.T) string {
			t.Setenv(EnvPolicyAdminToken, short)
			return validDoc
		}},
		{"a short admin token file", "policy.admin_token_file", "admin", func(t *testing.T) string {
			os.Unsetenv(EnvPolicyAdminToken)
			f := write("admin", short+"\n")
			return strings.Replace(validDoc, "policy: {", "policy: { admin_token_file: "+f+",", 1)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			secretsEnv(t)
			doc := tc.setup(t)
			_, err := parseServe(t, doc)
			var ke *KeyError
			if !errors.As(err, &ke) || ke.Key != tc.key || !strings.Contains(err.Error(), tc.where) || !strings.Contains(err.Error(), "at least 32") {
				t.Fatalf("err = %v, want a KeyError for %s naming %s and the minimum", err, tc.key, tc.where)
			}
			if strings.Contains(err.Error(), short) {
				t.Errorf("the error leaks the secret: %v", err)
			}
		})
	}
	secretsEnv(t)
	if _, err := parseServe(t, validDoc); err != nil {
		t.Errorf("32-byte and longer secrets: %v, want accepted", err)
	}
}
