package lxdprov

import (
	"context"
	"fmt"
	"time"

	"github.com/ephemera-ci/ephemera/scaler"
)

// imageRunnerVersion is the image property `ephemera image build` records
// the runner version of an image in.
const imageRunnerVersion = "ephemera.runner_version"

var _ scaler.ImageVersions = (*Provider)(nil)

// RunnerVersions reads, for every pool, the GitHub Actions runner version
// its image pins: the property ephemera.runner_version of the image the
// pool's alias names now (or of its fingerprint). A pool whose image has
// no such property (one not built by `ephemera image build`) is left out.
// The alias is read each time: it moves when an image is rebuilt or
// rolled back.
func (p *Provider) RunnerVersions(ctx context.Context) (_ map[string]string, err error) {
	start := time.Now()
	defer func() { p.metrics.observe(opImageVersions, start, err) }()
	out := map[string]string{}
	for name, pl := range p.pools {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		fp := pl.source.Fingerprint
		if pl.source.Alias != "" {
			alias, _, err := pl.srv.GetImageAlias(pl.source.Alias)
			if err != nil {
				return nil, fmt.Errorf("pool %s: image alias %q: %w", name, pl.source.Alias, err)
			}
			fp = alias.Target
		}
		img, _, err := pl.srv.GetImage(fp)
		if err != nil {
			return nil, fmt.Errorf("pool %s: image %s: %w", name, fp, err)
		}
		if v := img.Properties[imageRunnerVersion]; v != "" {
			out[name] = v
		}
	}
	return out, nil
}
