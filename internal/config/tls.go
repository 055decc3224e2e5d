package config

import (
	"crypto/tls"
	"fmt"
	"os"
)

// checkListenerTLS checks a listener's certificate and key under key
// (e.g. policy.tls): both or neither, the key file private to its owner,
// and the pair loadable, so that `config check` finds what would stop the
// listener from starting.
func checkListenerTLS(key string, t ListenerTLS) error {
	if !t.Enabled() {
		return nil
	}
	switch {
	case t.CertFile == "":
		return keyErr(key+".cert_file", "is required with "+key+".key_file")
	case t.KeyFile == "":
		return keyErr(key+".key_file", "is required with "+key+".cert_file")
	}
	info, err := os.Stat(t.KeyFile)
	if err != nil {
		return keyErr(key+".key_file", fmt.Sprintf("cannot read the key file: %v", unwrapPathError(err)))
	}
	if perm := info.Mode().Perm(); perm&0o077 != 0 {
		return keyErr(key+".key_file", fmt.Sprintf(
			"key file %s is open to other users (mode %04o): make it readable by its owner only (chmod 600 %s), as ssh requires of a private key", t.KeyFile, perm, t.KeyFile))
	}
	if _, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile); err != nil {
		return keyErr(key+".cert_file", fmt.Sprintf("cannot load the certificate and key: %v", unwrapPathError(err)))
	}
	return nil
}
