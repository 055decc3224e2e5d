package lxdprov

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path"
	"regexp"
	"strings"
)

var sha256RE = regexp.MustCompile(`^[0-9a-fA-F]{64}$`)

// maxTarball bounds a downloaded runner tarball (the real one is ~200 MB).
const maxTarball = 2 << 30

func isURL(s string) bool { return strings.HasPrefix(s, "https://") || strings.HasPrefix(s, "http://") }

// readTarball is the first step: it downloads a URL tarball to a
// temporary file, checks the SHA-256 when one is given, and checks that
// the tarball is laid out like the runner's.
func (b *builder) readTarball(ctx context.Context) (string, error) {
	src := b.cfg.Tarball
	var sum string
	if isURL(src) {
		p, s, err := download(ctx, src)
		if err != nil {
			return "", err
		}
		b.tarball, sum = p, s
		b.removeTarball = func() { _ = os.Remove(p) }
	} else {
		s, err := fileSHA256(src)
		if err != nil {
			return "", err
		}
		b.tarball, sum = src, s
	}
	if want := b.cfg.TarballSHA256; want != "" && !strings.EqualFold(want, sum) {
		return "", fmt.Errorf("%w: %s has sha256 %s, want %s", ErrChecksumMismatch, src, sum, strings.ToLower(want))
	}
	lay, err := inspectTarball(b.tarball)
	if err != nil {
		return "", fmt.Errorf("%s: %w", src, err)
	}
	b.hasDiag = lay.hasDiag
	detail := "sha256 " + sum
	if b.cfg.TarballSHA256 != "" {
		detail += " (checked)"
	}
	return detail, nil
}

// download fetches url into a temporary file and returns its path and
// SHA-256.
func download(ctx context.Context, url string) (string, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", "", fmt.Errorf("download %s: %w", url, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", "", fmt.Errorf("download %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", "", fmt.Errorf("download %s: %s", url, resp.Status)
	}
	f, err := os.CreateTemp("", "ephemera-runner-*.tar.gz")
	if err != nil {
		return "", "", fmt.Errorf("download %s: %w", url, err)
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(resp.Body, maxTarball+1))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && n > maxTarball {
		err = fmt.Errorf("larger than %d bytes", maxTarball)
	}
	if err != nil {
		_ = os.Remove(f.Name())
		return "", "", fmt.Errorf("download %s: %w", url, err)
	}
	return f.Name(), hex.EncodeToString(h.Sum(nil)), nil
}

func fileSHA256(name string) (string, error) {
	f, err := os.Open(name)
	if err != nil {
		return "", fmt.Errorf("runner tarball: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("runner tarball %s: %w", name, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// tarballLayout is what inspectTarball learnt.
type tarballLayout struct{ hasDiag bool }

// The files a runner tarball must hold at its top level.
var runnerFiles = []string{"run.sh", "bin/Runner.Listener"}

// inspectTarball checks that name is a gzip'd tar with the runner's files
// at its top level and no entry that would land outside the directory it
// is unpacked into.
func inspectTarball(name string) (tarballLayout, error) {
	f, err := os.Open(name)
	if err != nil {
		return tarballLayout{}, err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return tarballLayout{}, fmt.Errorf("%w: not gzip-compressed: %w", ErrNotRunnerTarball, err)
	}
	tr := tar.NewReader(zr)
	found := map[string]bool{}
	var lay tarballLayout
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return tarballLayout{}, fmt.Errorf("%w: %w", ErrNotRunnerTarball, err)
		}
		p := path.Clean(strings.TrimPrefix(h.Name, "./"))
		if path.IsAbs(h.Name) || p == ".." || strings.HasPrefix(p, "../") {
			return tarballLayout{}, fmt.Errorf("%w: entry %q lies outside the runner directory", ErrNotRunnerTarball, h.Name)
		}
		if h.Typeflag == tar.TypeReg {
			found[p] = true
		}
		if p == "_diag" || strings.HasPrefix(p, "_diag/") {
			lay.hasDiag = true
		}
	}
	var missing []string
	for _, want := range runnerFiles {
		if !found[want] {
			missing = append(missing, want)
		}
	}
	if len(missing) > 0 {
		return tarballLayout{}, fmt.Errorf("%w: no %s at its top level", ErrNotRunnerTarball, strings.Join(missing, " or "))
	}
	return lay, nil
}
