package config

import (
	"fmt"
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

// loadSecret reads a secret from the environment variable env when it is
// set, otherwise from file when one is configured. A file's content is
// trimmed of surrounding white space. The error names key, never the value.
func loadSecret(key, file, env string) (Secret, error) {
	if v, ok := os.LookupEnv(env); ok && strings.TrimSpace(v) != "" {
		return Secret{v: strings.TrimSpace(v)}, nil
	}
	if file == "" {
		return Secret{}, nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return Secret{}, &KeyError{Key: key, Problem: fmt.Sprintf("cannot read secret file: %v", unwrapPathError(err))}
	}
	v := strings.TrimSpace(string(b))
	if v == "" {
		return Secret{}, &KeyError{Key: key, Problem: fmt.Sprintf("secret file %s is empty", file)}
	}
	return Secret{v: v}, nil
}

func unwrapPathError(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return fmt.Errorf("%s: %w", pe.Path, pe.Err)
	}
	return err
}
