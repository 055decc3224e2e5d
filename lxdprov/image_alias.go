package lxdprov

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/canonical/lxd/shared/api"
)

// FamilyImage is one kept image of an alias family.
type FamilyImage struct {
	Fingerprint   string
	RunnerVersion string
	BuiltAt       string
	Base          string
	// Current: the alias names this image.
	Current bool
}

// Errors of RollbackImage.
var (
	ErrNoOlderImage  = errors.New("no older kept image of the alias")
	ErrNotInFamily   = errors.New("not a kept image of the alias")
	ErrAliasNotFound = errors.New("image alias not found")
)

// familyServer is what ListImages and RollbackImage call.
type familyServer interface {
	GetImages() ([]api.Image, error)
	GetImageAlias(name string) (*api.ImageAliasesEntry, string, error)
	UpdateImageAlias(name string, alias api.ImageAliasesEntryPut, etag string) error
}

// withProject connects as cfg says (its connection fields and Project)
// and calls f on the project's server.
func withProject(ctx context.Context, cfg Config, f func(familyServer) error) error {
	conns := &connTracker{}
	defer conns.closeAll()
	srv, _, err := connect(ctx, cfg, conns)
	if err != nil {
		return fmt.Errorf("lxdprov: %w", err)
	}
	if cfg.Project == "" {
		cfg.Project = "default"
	}
	return f(srv.UseProject(cfg.Project))
}

// ListImages returns the images of alias's family, newest first.
func ListImages(ctx context.Context, cfg Config, alias string) ([]FamilyImage, error) {
	var out []FamilyImage
	err := withProject(ctx, cfg, func(srv familyServer) error {
		var err error
		out, err = listFamily(srv, alias)
		return err
	})
	return out, err
}

func listFamily(srv familyServer, alias string) ([]FamilyImage, error) {
	imgs, err := srv.GetImages()
	if err != nil {
		return nil, fmt.Errorf("list images: %w", err)
	}
	current := ""
	if a, _, err := srv.GetImageAlias(alias); err == nil {
		current = a.Target
	} else if !isNotFound(err) {
		return nil, fmt.Errorf("look up alias %s: %w", alias, err)
	}
	var out []FamilyImage
	for _, img := range Family(imgs, alias) {
		out = append(out, FamilyImage{
			Fingerprint:   img.Fingerprint,
			RunnerVersion: img.Properties[PropRunnerVersion],
			BuiltAt:       img.Properties[PropBuiltAt],
			Base:          img.Properties[PropBase],
			Current:       img.Fingerprint == current,
		})
	}
	return out, nil
}

// RollbackImage points alias at an older kept image of its family: to (a
// fingerprint or a unique prefix of one), or when empty the newest image
// older than the one alias names now. It returns both fingerprints.
func RollbackImage(ctx context.Context, cfg Config, alias, to string) (from, now string, err error) {
	err = withProject(ctx, cfg, func(srv familyServer) error {
		from, now, err = rollback(srv, alias, to)
		return err
	})
	return from, now, err
}

func rollback(srv familyServer, alias, to string) (string, string, error) {
	a, etag, err := srv.GetImageAlias(alias)
	if isNotFound(err) {
		return "", "", fmt.Errorf("%w: %s", ErrAliasNotFound, alias)
	}
	if err != nil {
		return "", "", fmt.Errorf("look up alias %s: %w", alias, err)
	}
	fam, err := listFamily(srv, alias)
	if err != nil {
		return "", "", err
	}
	target := ""
	if to == "" {
		for i, img := range fam {
			if img.Current && i+1 < len(fam) {
				target = fam[i+1].Fingerprint
			}
		}
		if target == "" {
			return "", "", fmt.Errorf("%w %s (it names %s; `ephemera image list` shows the kept ones)", ErrNoOlderImage, alias, short(a.Target))
		}
	} else {
		for _, img := range fam {
			if strings.HasPrefix(img.Fingerprint, strings.ToLower(to)) {
				if target != "" {
					return "", "", fmt.Errorf("%q matches more than one image of %s", to, alias)
				}
				target = img.Fingerprint
			}
		}
		if target == "" {
			return "", "", fmt.Errorf("%s: %w %s", to, ErrNotInFamily, alias)
		}
	}
	if err := srv.UpdateImageAlias(alias, api.ImageAliasesEntryPut{Target: target, Description: a.Description}, etag); err != nil {
		return "", "", fmt.Errorf("move alias %s: %w", alias, err)
	}
	return a.Target, target, nil
}
