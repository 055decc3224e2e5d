package lxdprov

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/canonical/lxd/shared/api"
)

// imageProperties are the properties of a new image of alias.
func imageProperties(alias, version, base, baseFP string, now time.Time) map[string]string {
	return map[string]string{
		PropAlias:           alias,
		PropRunnerVersion:   version,
		PropBuiltAt:         now.UTC().Format(time.RFC3339),
		PropBase:            base,
		PropBaseFingerprint: baseFP,
		"description":       fmt.Sprintf("ephemera runner %s on %s", version, base),
	}
}

// publish makes an image of the stopped builder.
func (b *builder) publish(ctx context.Context) (string, error) {
	post := api.ImagesPost{
		ImagePut: api.ImagePut{
			Properties: imageProperties(b.cfg.Alias, b.version, b.cfg.Base, b.baseFP, time.Now()),
		},
		Source:               &api.ImagesPostSource{Type: "instance", Name: b.name},
		CompressionAlgorithm: b.cfg.Compression,
	}
	op, err := b.srv.CreateImage(post, nil)
	var done api.Operation
	if err == nil {
		done, err = waitOp(ctx, b.srv, op)
	}
	if err != nil {
		return "", fmt.Errorf("publish %s: %w", b.name, err)
	}
	fp, _ := done.Metadata["fingerprint"].(string)
	if fp == "" {
		return "", errNoFingerprint
	}
	b.fingerprint = fp
	img, _, err := b.srv.GetImage(fp)
	if err != nil {
		return "", fmt.Errorf("look up the published image %s: %w", short(fp), err)
	}
	return fmt.Sprintf("image %s, %d MB", short(fp), img.Size>>20), nil
}

// moveAlias points the alias at the new image, creating it if needed.
func (b *builder) moveAlias(ctx context.Context) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	desc := "ephemera runner image (ephemera image build)"
	old, etag, err := b.srv.GetImageAlias(b.cfg.Alias)
	switch {
	case err == nil:
		if err := b.srv.UpdateImageAlias(b.cfg.Alias, api.ImageAliasesEntryPut{Target: b.fingerprint, Description: desc}, etag); err != nil {
			return "", fmt.Errorf("move alias %s: %w", b.cfg.Alias, err)
		}
		b.aliased = true
		return fmt.Sprintf("%s: %s → %s", b.cfg.Alias, short(old.Target), short(b.fingerprint)), nil
	case isNotFound(err):
		post := api.ImageAliasesPost{ImageAliasesEntry: api.ImageAliasesEntry{Name: b.cfg.Alias, Target: b.fingerprint, Description: desc}}
		if err := b.srv.CreateImageAlias(post); err != nil {
			return "", fmt.Errorf("create alias %s: %w", b.cfg.Alias, err)
		}
		b.aliased = true
		return fmt.Sprintf("%s → %s (new alias)", b.cfg.Alias, short(b.fingerprint)), nil
	default:
		return "", fmt.Errorf("look up alias %s: %w", b.cfg.Alias, err)
	}
}

func (b *builder) deleteBuilder(ctx context.Context) (string, error) {
	if err := b.forceDelete(ctx); err != nil {
		return "", err
	}
	b.deleted = true
	return b.name + " deleted", nil
}

// prune deletes the images of the alias family beyond the newest
// cfg.Keep, except those an instance was created from (in any project)
// and the one the alias names. A failure here leaves the new image in
// place and aliased: the build succeeded, the older images stay.
func (b *builder) prune(ctx context.Context) (string, error) {
	imgs, err := b.srv.GetImages()
	if err != nil {
		return "", fmt.Errorf("list images: %w", err)
	}
	inUse, err := b.imagesInUse()
	if err != nil {
		return "", err
	}
	family := Family(imgs, b.cfg.Alias)
	del, kept := pruneSet(family, b.cfg.Keep, b.fingerprint, inUse)
	for _, fp := range del {
		op, err := b.srv.DeleteImage(fp)
		if err == nil {
			_, err = waitOp(ctx, b.srv, op)
		}
		if err != nil && !isNotFound(err) {
			return "", fmt.Errorf("delete old image %s: %w", short(fp), err)
		}
		b.pruned = append(b.pruned, fp)
		b.log.Info().Str("image", fp).Msg("deleted an old image of the alias family")
	}
	detail := fmt.Sprintf("%d of the family kept, %d deleted", len(family)-len(del), len(del))
	if len(kept) > 0 {
		detail += fmt.Sprintf(" (%d older kept: in use by instances)", len(kept))
	}
	return detail, nil
}

// imagesInUse returns the fingerprints instances were created from, in
// every project (or this one, when LXD cannot list them all).
func (b *builder) imagesInUse() (map[string]bool, error) {
	insts, err := b.all.GetInstancesAllProjects(api.InstanceTypeAny)
	if err != nil {
		b.log.Warn().Err(err).Msg("cannot list every project's instances; checking this project's only")
		if insts, err = b.srv.GetInstances(api.InstanceTypeAny); err != nil {
			return nil, fmt.Errorf("list instances: %w", err)
		}
	}
	used := map[string]bool{}
	for _, inst := range insts {
		if fp := inst.Config["volatile.base_image"]; fp != "" {
			used[fp] = true
		}
	}
	return used, nil
}

// Family returns the images of alias's family (property ephemera.alias),
// newest first.
func Family(imgs []api.Image, alias string) []api.Image {
	var fam []api.Image
	for _, img := range imgs {
		if img.Properties[PropAlias] == alias {
			fam = append(fam, img)
		}
	}
	slices.SortStableFunc(fam, func(a, b api.Image) int {
		if c := strings.Compare(b.Properties[PropBuiltAt], a.Properties[PropBuiltAt]); c != 0 {
			return c
		}
		return b.CreatedAt.Compare(a.CreatedAt)
	})
	return fam
}

// pruneSet picks, from family (newest first), the images to delete: all
// but the first keep, never current, never one in use. kept lists the
// ones past keep spared because they are in use.
func pruneSet(family []api.Image, keep int, current string, inUse map[string]bool) (del, kept []string) {
	for i, img := range family {
		switch {
		case i < keep, img.Fingerprint == current:
		case inUse[img.Fingerprint]:
			kept = append(kept, img.Fingerprint)
		default:
			del = append(del, img.Fingerprint)
		}
	}
	return del, kept
}
