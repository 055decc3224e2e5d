package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"net/http"
	"strings"
	"sync"
)

const (
	headerSignature256 = "X-Hub-Signature-256"
	headerSignatureSHA = "X-Hub-Signature" // SHA-1: refused
	signaturePrefix    = "sha256="
)

// verifier checks X-Hub-Signature-256 against every configured secret, so
// a secret can be rotated without downtime: configure the new one next to
// the old, switch GitHub to the new one, then drop the old.
type verifier struct {
	macs []*sync.Pool // one pool of HMAC-SHA256 states per secret
}

func newVerifier(secrets [][]byte) *verifier {
	v := &verifier{}
	for _, key := range secrets {
		v.macs = append(v.macs, &sync.Pool{New: func() any { return hmac.New(sha256.New, key) }})
	}
	return v
}

// verify reports nil when the signature header is an HMAC-SHA256 of body
// under one of the secrets. Every secret is tried, whatever the result, and
// each comparison is constant-time.
func (v *verifier) verify(h http.Header, body []byte) error {
	header := h.Get(headerSignature256)
	if header == "" {
		if h.Get(headerSignatureSHA) != "" {
			return errSHA1Only
		}
		return errNoSignature
	}
	hexSig, ok := strings.CutPrefix(header, signaturePrefix)
	var got [sha256.Size]byte
	if !ok || len(hexSig) != hex.EncodedLen(sha256.Size) {
		return errBadSignature
	}
	if _, err := hex.Decode(got[:], []byte(hexSig)); err != nil {
		return errBadSignature
	}
	match := false
	var sum [sha256.Size]byte
	for _, p := range v.macs {
		mac := p.Get().(hash.Hash)
		mac.Reset()
		mac.Write(body)
		if hmac.Equal(mac.Sum(sum[:0]), got[:]) {
			match = true
		}
		p.Put(mac)
	}
	if !match {
		return errBadSignature
	}
	return nil
}

// Sign returns the X-Hub-Signature-256 value GitHub sends for body signed
// with secret. Tests, the demo and the GitHub stand-in use it.
func Sign(secret string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return signaturePrefix + hex.EncodeToString(mac.Sum(nil))
}
