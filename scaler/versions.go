package scaler

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/ephemera-ci/ephemera/internal/logkey"
)

// GitHub refuses runners older than the minimum it supports, so the
// leader compares, once a VersionCheckInterval (a day), the runner
// version each pool's image pins with the newest GitHub lists for
// download, and records both in BucketMeta: `ephemera status` shows them,
// [StatusCollector] exports ephemera_runner_version_outdated and
// ephemera_runner_version_info, and an outdated pool is logged as a
// warning at each check. The pinned versions are read from the
// provisioner, which is cheap and local, every hour (or every
// VersionCheckInterval when shorter), so a rebuilt image clears the
// warning within the hour.

// RunnerReleases is what a GitHub may also implement: the newest runner
// version GitHub offers for download (GET …/actions/runners/downloads).
type RunnerReleases interface {
	LatestRunnerVersion(ctx context.Context, installationID int64) (string, error)
}

// ImageVersions is what a Provisioner may also implement: the runner
// version each pool's image pins, by pool; pools whose image says
// nothing are left out.
type ImageVersions interface {
	RunnerVersions(ctx context.Context) (map[string]string, error)
}

// versionKey is the BucketMeta key of the last runner version check.
const versionKey = "runner_version"

// pinnedEvery is how often the leader reads the runner version its
// pools' images pin, and retries a failed check.
func (s *Scaler) pinnedEvery() time.Duration { return min(time.Hour, s.cfg.VersionCheckInterval) }

// versionCheck is what the leader last learnt about runner versions.
type versionCheck struct {
	// Latest is the newest runner GitHub lists, as of CheckedAt.
	Latest    string    `json:"latest,omitempty"`
	CheckedAt time.Time `json:"checked_at,omitzero"`
	// Pinned is each pool's image's runner version, as of PinnedAt.
	Pinned   map[string]string `json:"pinned,omitempty"`
	PinnedAt time.Time         `json:"pinned_at,omitzero"`
}

// checkRunnerVersions runs on the leader after a reconcile pass: when the
// last check is older than its interval it asks again (GitHub once a
// VersionCheckInterval, the images every pinnedEvery), records
// the answers and warns about every pool whose image pins a runner older
// than GitHub's newest. A failed read is retried after
// pinnedEvery, keeping the last good answer meanwhile.
func (s *Scaler) checkRunnerVersions(ctx context.Context) {
	rel, okGH := s.cfg.GitHub.(RunnerReleases)
	img, okImg := s.cfg.Provisioner.(ImageVersions)
	if !okGH || !okImg {
		return
	}
	now := s.now()
	if now.Sub(s.versionTried) < s.pinnedEvery() && !s.versionTried.IsZero() {
		return
	}
	e, err := get[versionCheck](ctx, s.kv.meta, versionKey)
	if err != nil {
		s.log.Warn().Err(err).Msg("read the last runner version check")
		return
	}
	vc := e.Val
	changed := false
	if now.Sub(vc.PinnedAt) >= s.pinnedEvery() {
		if pinned, err := img.RunnerVersions(ctx); err != nil {
			s.log.Warn().Err(err).Msg("read the runner version of the pools' images")
		} else {
			vc.Pinned, vc.PinnedAt, changed = pinned, now.UTC(), true
		}
	}
	if now.Sub(vc.CheckedAt) >= s.cfg.VersionCheckInterval {
		latest, err := rel.LatestRunnerVersion(ctx, 0)
		if errors.Is(err, ErrNoInstallation) {
			latest, err = rel.LatestRunnerVersion(ctx, s.anyInstallation(ctx))
		}
		if err != nil {
			s.log.Warn().Err(err).Msg("ask GitHub for the newest runner version")
		} else {
			vc.Latest, vc.CheckedAt, changed = latest, now.UTC(), true
			for _, pool := range sortedKeys(vc.Pinned) {
				if RunnerOutdated(vc.Pinned[pool], latest) {
					s.log.Warn().Str(logkey.Pool, pool).Str(logkey.RunnerVersion, vc.Pinned[pool]).Str(logkey.LatestVersion, latest).
						Msg("the pool's image pins a runner older than the newest GitHub lists; GitHub refuses runners older than its supported minimum: move the pin and rebuild the image")
				}
			}
		}
	}
	s.versionTried = now
	if !changed {
		return
	}
	if _, err := s.kv.meta.Put(ctx, versionKey, encode(vc)); err != nil {
		s.log.Warn().Err(err).Msg("record the runner version check")
	}
}

// anyInstallation is an installation a runner was registered with, for
// a replica that has seen no event yet; 0 when none is known.
func (s *Scaler) anyInstallation(ctx context.Context) int64 {
	recs, err := s.kv.runners.all(ctx)
	if err != nil {
		return 0
	}
	for _, e := range recs {
		if e.Val.InstallationID != 0 {
			return e.Val.InstallationID
		}
	}
	return 0
}

// RunnerOutdated reports whether pinned is an older runner version than
// latest. Versions are compared as dotted numbers (2.321.0); a suffix
// after - or + (2.321.0-standin) is ignored. A version that is not a
// dotted number is never reported outdated.
func RunnerOutdated(pinned, latest string) bool {
	c, ok := CompareRunnerVersions(pinned, latest)
	return ok && c < 0
}

// CompareRunnerVersions compares two runner versions: -1, 0 or +1, and
// whether both parsed.
func CompareRunnerVersions(a, b string) (int, bool) {
	pa, oka := parseVersion(a)
	pb, okb := parseVersion(b)
	if !oka || !okb {
		return 0, false
	}
	for i := range max(len(pa), len(pb)) {
		var x, y int
		if i < len(pa) {
			x = pa[i]
		}
		if i < len(pb) {
			y = pb[i]
		}
		if x != y {
			if x < y {
				return -1, true
			}
			return 1, true
		}
	}
	return 0, true
}

func parseVersion(v string) ([]int, bool) {
	v = strings.TrimPrefix(v, "v")
	if i := strings.IndexAny(v, "-+"); i >= 0 {
		v = v[:i]
	}
	if v == "" {
		return nil, false
	}
	parts := strings.Split(v, ".")
	out := make([]int, len(parts))
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return nil, false
		}
		out[i] = n
	}
	return out, true
}
