package scaler

import (
	"crypto/rand"
	"strings"
)

// NamePrefix starts every runner's (and instance's) name.
const NamePrefix = "eph-"

const suffixAlphabet = "abcdefghijklmnopqrstuvwxyz0123456789"

// runnerName is eph-<pool>-<8 random [a-z0-9]>: at most 4+30+1+8 = 43
// characters, within LXD's 63.
func runnerName(pool string) string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = suffixAlphabet[int(b[i])%len(suffixAlphabet)]
	}
	return NamePrefix + pool + "-" + string(b)
}

// poolOfName returns the pool a runner name belongs to among pools, the
// longest matching prefix winning (pool "a" and "a-b" both exist).
func poolOfName(name string, pools map[string]struct{}) (string, bool) {
	rest, ok := strings.CutPrefix(name, NamePrefix)
	if !ok {
		return "", false
	}
	i := strings.LastIndexByte(rest, '-')
	if i <= 0 {
		return "", false
	}
	p := rest[:i]
	_, ok = pools[p]
	return p, ok
}

// ownRunner reports whether name is one this scaler makes for one of its
// pools: eph-<pool>-<8 of [a-z0-9]>. Events name any runner that took a
// job — another self-hosted runner with matching labels too, whose name
// ("build box 1", "runner-2@ip-…") need not be a valid KV key — and only
// ephemera's own runners have records.
func (s *Scaler) ownRunner(name string) bool {
	rest, ok := strings.CutPrefix(name, NamePrefix)
	if !ok || len(rest) < 10 {
		return false
	}
	pool, suffix := rest[:len(rest)-9], rest[len(rest)-8:]
	if rest[len(rest)-9] != '-' {
		return false
	}
	if _, ok := s.pools[pool]; !ok {
		return false
	}
	for i := range len(suffix) {
		if !strings.ContainsRune(suffixAlphabet, rune(suffix[i])) {
			return false
		}
	}
	return true
}
