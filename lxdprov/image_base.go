package lxdprov

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/canonical/lxd/shared/api"
)

// KnownRemotes are the image servers a base may name as remote:alias, as
// the lxc client names them. LXD downloads from them itself.
var KnownRemotes = map[string]string{
	"ubuntu":         "https://cloud-images.ubuntu.com/releases",
	"ubuntu-daily":   "https://cloud-images.ubuntu.com/daily",
	"ubuntu-minimal": "https://cloud-images.ubuntu.com/minimal/releases/",
	"images":         "https://images.linuxcontainers.org",
}

// splitRemote splits remote:alias; remote is "" for a local image (no
// colon, or local:).
func splitRemote(base string) (remote, name string, err error) {
	remote, name, ok := strings.Cut(base, ":")
	if !ok {
		return "", base, nil
	}
	if name == "" {
		return "", "", fmt.Errorf("base %q: no image after the colon", base)
	}
	if remote == "local" {
		return "", name, nil
	}
	if _, known := KnownRemotes[remote]; !known {
		return "", "", fmt.Errorf("base %q: unknown remote %q (known: local, %s)", base, remote, strings.Join(slices.Sorted(maps.Keys(KnownRemotes)), ", "))
	}
	return remote, name, nil
}

// baseSource is the instance source that starts a builder from base: a
// remote image LXD pulls, or a local alias or fingerprint, checked to
// exist and to be of type typ.
func baseSource(srv imageServer, base string, typ api.InstanceType) (api.InstanceSource, error) {
	remote, name, err := splitRemote(base)
	if err != nil {
		return api.InstanceSource{}, err
	}
	if remote != "" {
		return api.InstanceSource{Type: "image", Mode: "pull", Server: KnownRemotes[remote], Protocol: "simplestreams", Alias: name}, nil
	}
	var img *api.Image
	alias, _, aerr := srv.GetImageAlias(name)
	switch {
	case aerr == nil:
		if img, _, err = srv.GetImage(alias.Target); err != nil {
			return api.InstanceSource{}, fmt.Errorf("base %q: alias points at image %s: %w", base, alias.Target, err)
		}
	case !isNotFound(aerr):
		return api.InstanceSource{}, fmt.Errorf("look up base %q: %w", base, aerr)
	default:
		img, _, err = srv.GetImage(name)
		if isNotFound(err) {
			return api.InstanceSource{}, fmt.Errorf("%w: %q is neither an alias nor a fingerprint in this project", ErrBaseNotFound, base)
		}
		if err != nil {
			return api.InstanceSource{}, fmt.Errorf("look up base %q: %w", base, err)
		}
	}
	if img.Type != "" && img.Type != string(typ) {
		return api.InstanceSource{}, fmt.Errorf("base %q is a %s image; a %s build needs a %s image", base, img.Type, typ, typ)
	}
	return api.InstanceSource{Type: "image", Fingerprint: img.Fingerprint}, nil
}

// findBase resolves the base image.
func (b *builder) findBase(ctx context.Context) (string, error) {
	src, err := baseSource(b.srv, b.cfg.Base, api.InstanceType(b.cfg.Type))
	if err != nil {
		return "", err
	}
	b.source = src
	if src.Server != "" {
		return fmt.Sprintf("%s from %s (LXD downloads it)", src.Alias, src.Server), nil
	}
	b.baseFP = src.Fingerprint
	return "image " + short(src.Fingerprint), nil
}

func short(fp string) string {
	if len(fp) > 12 {
		return fp[:12]
	}
	return fp
}
