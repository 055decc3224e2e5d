package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestOnLoopback(t *testing.T) {
	for listen, want := range map[string]bool{
		"127.0.0.1:9090": true, "127.8.9.10:9090": true, "[::1]:9090": true, "localhost:9090": true,
		":9090": false, "0.0.0.0:9090": false, "[::]:9090": false, "192.0.2.1:9090": false, "example.org:9090": false, "nonsense": false,
	} {
		if got := OnLoopback(listen); got != want {
			t.Errorf("OnLoopback(%q) = %v, want %v", listen, got, want)
		}
	}
}

func TestStatusTokenIsReadForTheScalerRoles(t *testing.T) {
	secretsEnv(t)
	file := filepath.Join(t.TempDir(), "status-token")
	if err := os.WriteFile(file, []byte("status-token-0123456789abcdef0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := parseServe(t, validDoc+"status: { token_file: "+file+" }\n")
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Secrets.StatusToken.Reveal(); got != "status-token-0123456789abcdef0123456789" {
		t.Errorf("status token %q", got)
	}
	_, err = parseServe(t, validDoc+"status: { token_file: "+file+".missing }\n")
	var ke *KeyError
	if !errors.As(err, &ke) || ke.Key != "status.token_file" || strings.Contains(err.Error(), "status-token-0123") {
		t.Errorf("a missing token file: %v, want a KeyError naming status.token_file", err)
	}
}
