package config

import (
	"fmt"
	"io"
	"os"
	"strings"
)

// Secret holds a credential. It never prints itself: String, GoString and
// the text and JSON encodings all yield "[redacted]", so a Secret that
// slips into a log line, an error or `config check` output leaks nothing.
// Reveal returns the value for the one place that needs it.
type Secret struct{ v string }

// NewSecret wraps a value; tests and the demo use it.
func NewSecret(v string) Secret { return Secret{v: v} }

// Reveal returns the secret's value.
func (s Secret) Reveal() string { return s.v }

// IsZero reports whether no secret was configured.
func (s Secret) IsZero() bool { return s.v == "" }

const redacted = "[redacted]"

func (s Secret) String() string               { return redactedOrEmpty(s) }
func (s Secret) GoString() string             { return redactedOrEmpty(s) }
func (s Secret) MarshalText() ([]byte, error) { return []byte(redactedOrEmpty(s)), nil }
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + redactedOrEmpty(s) + `"`), nil }

func redactedOrEmpty(s Secret) string {
	if s.v == "" {
		return ""
	}
	return redacted
}

// MinSecretLen is the shortest webhook secret or policy admin token
// accepted, in bytes: 32 random bytes (or 32 hex characters, 128 bits) are
// out of reach of guessing; `openssl rand -hex 32` makes a good one.
const MinSecretLen = 32

// loadSecret reads a secret from the environment variable env when it is
// set, otherwise from file when one is configured. A file's content is
// trimmed of surrounding white space. A file that users other than its
// owner may read, write or run is refused, as ssh refuses such a private
// key: whoever else can read it has the secret. The error names key and
// file, never the value.
func loadSecret(key, file, env string) (Secret, error) {
	if v, ok := os.LookupEnv(env); ok && strings.TrimSpace(v) != "" {
		return Secret{v: strings.TrimSpace(v)}, nil
	}
	if file == "" {
		return Secret{}, nil
	}
	f, err := os.Open(file)
	if err != nil {
		return Secret{}, &KeyError{Key: key, Problem: fmt.Sprintf("cannot read secret file: %v", unwrapPathError(err))}
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return Secret{}, &KeyError{Key: key, Problem: fmt.Sprintf("cannot read secret file: %v", unwrapPathError(err))}
	}
	if perm := info.Mode().Perm(); perm&0o077 != 0 {
		return Secret{}, &KeyError{Key: key, Problem: fmt.Sprintf(
			"secret file %s is open to other users (mode %04o): make it readable by its owner only (chmod 600 %s), as ssh requires of a private key", file, perm, file)}
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return Secret{}, &KeyError{Key: key, Problem: fmt.Sprintf("cannot read secret file: %v", unwrapPathError(err))}
	}
	v := strings.TrimSpace(string(b))
	if v == "" {
		return Secret{}, &KeyError{Key: key, Problem: fmt.Sprintf("secret file %s is empty", file)}
	}
	return Secret{v: v}, nil
}

// checkLength refuses a secret shorter than MinSecretLen bytes; what names
// where it came from (a file and line, or an environment variable).
func checkLength(key, what string, s Secret) error {
	if n := len(s.v); n < MinSecretLen {
		return &KeyError{Key: key, Problem: fmt.Sprintf("%s is %d bytes long; at least %d are required (make one with: openssl rand -hex 32)", what, n, MinSecretLen)}
	}
	return nil
}

// source names where a secret loaded by loadSecret came from.
func source(file, env string) string {
	if v, ok := os.LookupEnv(env); ok && strings.TrimSpace(v) != "" {
		return "the secret in " + env
	}
	return "the secret in " + file
}

func unwrapPathError(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return fmt.Errorf("%s: %w", pe.Path, pe.Err)
	}
	return err
}
