package lxdprov

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/canonical/lxd/shared/api"

	"github.com/ephemera-ci/ephemera/internal/config"
	"github.com/ephemera-ci/ephemera/internal/logkey"
)

// The config keys a template instance carries. A copy inherits every
// non-volatile key of its source, so Create sets these to "" on copies.
const (
	KeyTemplate      = "user.ephemera.template"       // the pool it serves
	KeyTemplateImage = "user.ephemera.template-image" // the image fingerprint it was made from
	KeyTemplateReady = "user.ephemera.template-ready" // "true" once reset and stopped
)

// Template timing.
const (
	// DefaultTemplateInterval is how often Run checks each pool's image
	// alias and template when Config.TemplateInterval is zero.
	DefaultTemplateInterval = time.Minute
	// templateBuild bounds one template's build; a template that is not
	// ready this long after its creation was abandoned (its builder died)
	// and is rebuilt.
	templateBuild = 5 * time.Minute
	// templateRetry is how long a failed build is not tried again.
	templateRetry = 5 * time.Minute
)

// resetScript runs in a template after its one boot, so that every copy
// boots as a new machine: cloud-init forgets the instance it ran for (and
// runs again in each copy), /etc/machine-id is emptied (systemd makes a
// fresh one at the copy's first boot), and the saved random seed goes. An
// image without cloud-init or systemd (the busybox test image) has nothing
// to reset.
const resetScript = `set -e
if command -v cloud-init >/dev/null 2>&1; then
	cloud-init status --wait >/dev/null 2>&1 || true
	cloud-init clean --logs
fi
if [ -s /etc/machine-id ]; then : >/etc/machine-id; fi
if [ -f /var/lib/dbus/machine-id ] && [ ! -L /var/lib/dbus/machine-id ]; then rm -f /var/lib/dbus/machine-id; fi
rm -f /var/lib/systemd/random-seed
sync
`

// templates tracks each pool's ready template.
type templates struct {
	interval time.Duration
	wake     chan struct{} // Create asks Run for a sync

	mu     sync.Mutex
	ready  map[string]templateRef // pool → its ready template
	failed map[string]time.Time   // template name → when its build failed
}

// templateRef is a ready template: its instance name and the image
// fingerprint it was made from.
type templateRef struct{ name, fingerprint string }

func newTemplates(interval time.Duration) *templates {
	if interval <= 0 {
		interval = DefaultTemplateInterval
	}
	return &templates{
		interval: interval,
		wake:     make(chan struct{}, 1),
		ready:    map[string]templateRef{},
		failed:   map[string]time.Time{},
	}
}

func (t *templates) get(pool string) (templateRef, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	ref, ok := t.ready[pool]
	return ref, ok
}

func (t *templates) set(pool string, ref templateRef) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.ready[pool] = ref
}

// forget drops pool's template, if it is still name ("" drops any).
func (t *templates) forget(pool, name string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if ref, ok := t.ready[pool]; ok && (name == "" || ref.name == name) {
		delete(t.ready, pool)
	}
}

// nudge asks Run to sync soon; it never blocks.
func (t *templates) nudge() {
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

// TemplateName is the instance name of pool's template for the image
// with fingerprint fp.
func TemplateName(pool, fp string) string {
	return "eph-tpl-" + pool + "-" + fp[:min(12, len(fp))]
}

// usesTemplate reports whether a pool's instances are copied from a
// template: its template key, for containers only. A template's gain is
// that its rootfs is already shifted to the containers' id map, which a
// virtual machine does not need; on a copy-on-write storage pool an
// instance from an image is already a snapshot of the image's volume.
func usesTemplate(pc config.Pool) bool {
	return pc.Template && pc.InstanceType == config.InstanceContainer
}

// Run keeps the template of every pool with template: true in step with its image until
// ctx ends: it builds the template when there is none for the image the
// pool's alias points to now, marks it ready, and deletes the pool's
// templates of earlier images. It checks every Config.TemplateInterval, and
// soon after a Create found no template. Until Run has a template ready,
// Create starts instances from the image; Create never waits for a
// template. Several providers (scaler replicas) may run it on one LXD
// project: the template's name is derived from the pool and the image, so
// one of them builds it and the others find it. Run returns nil when ctx
// ends.
func (p *Provider) Run(ctx context.Context) error {
	tick := time.NewTicker(p.tpl.interval)
	defer tick.Stop()
	for {
		p.SyncTemplates(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		case <-p.tpl.wake:
		}
	}
}

// SyncTemplates brings every container pool's template in step with its
// image once (what Run does each interval).
func (p *Provider) SyncTemplates(ctx context.Context) {
	for _, name := range p.poolNames() {
		pl := p.pools[name]
		if !usesTemplate(pl.cfg) || ctx.Err() != nil {
			continue
		}
		err := p.syncTemplate(ctx, pl)
		switch {
		case err == nil || ctx.Err() != nil:
		case errors.Is(err, errRetryLater):
			p.log.Debug().Err(err).Str(logkey.Pool, name).Msg("template not ready: instances start from the image")
		default:
			p.log.Warn().Err(err).Str(logkey.Pool, name).Msg("template not ready: instances start from the image")
		}
	}
}

// imageFingerprint is the fingerprint of the image pl's instances start
// from now (an alias may move to a new image at any time).
func imageFingerprint(pl *pool) (string, error) {
	if pl.source.Alias == "" {
		return pl.source.Fingerprint, nil
	}
	a, _, err := pl.srv.GetImageAlias(pl.source.Alias)
	if err != nil {
		return "", fmt.Errorf("look up image alias %q: %w", pl.source.Alias, err)
	}
	return a.Target, nil
}

func (p *Provider) syncTemplate(ctx context.Context, pl *pool) error {
	pool := pl.cfg.Name
	fp, err := imageFingerprint(pl)
	if err != nil {
		p.tpl.forget(pool, "")
		return err
	}
	name := TemplateName(pool, fp)
	if ref, ok := p.tpl.get(pool); ok && ref.name != name {
		p.tpl.forget(pool, ref.name) // the image moved on: the image until the new template is ready
	}
	inst, _, err := pl.srv.GetInstance(name)
	switch {
	case isNotFound(err):
		p.tpl.forget(pool, name)
		if err := p.buildTemplate(ctx, pl, name, fp); errors.Is(err, errBuilding) {
			return nil
		} else if err != nil {
			return err
		}
	case err != nil:
		return fmt.Errorf("look up template %s: %w", name, err)
	case inst.Config[KeyTemplateReady] != "true" || inst.StatusCode != api.Stopped:
		p.tpl.forget(pool, name)
		if !abandoned(inst) {
			return nil // another provider is building it
		}
		p.log.Warn().Str(logkey.Pool, pool).Str(logkey.Instance, name).Msg("deleting a template whose build was abandoned")
		if err := p.Delete(ctx, name); err != nil {
			return fmt.Errorf("delete abandoned template %s: %w", name, err)
		}
		if err := p.buildTemplate(ctx, pl, name, fp); errors.Is(err, errBuilding) {
			return nil
		} else if err != nil {
			return err
		}
	}
	p.tpl.set(pool, templateRef{name: name, fingerprint: fp})
	return p.deleteStaleTemplates(ctx, pl, name)
}

// abandoned reports whether a template that is not ready has been built
// for longer than a build may take.
func abandoned(inst *api.Instance) bool {
	created, err := time.Parse(time.RFC3339, inst.Config[KeyCreated])
	return err != nil || time.Since(created) > templateBuild
}

// deleteStaleTemplates deletes pl's templates other than current (of
// earlier images), except one another provider may still be building.
func (p *Provider) deleteStaleTemplates(ctx context.Context, pl *pool, current string) error {
	all, err := pl.srv.GetInstances(api.InstanceTypeAny)
	if err != nil {
		return fmt.Errorf("list templates: %w", err)
	}
	var errs []error
	for _, inst := range all {
		if inst.Config[KeyTemplate] != pl.cfg.Name || inst.Name == current {
			continue
		}
		if inst.Config[KeyTemplateReady] != "true" && !abandoned(&inst) {
			continue
		}
		p.log.Info().Str(logkey.Pool, pl.cfg.Name).Str(logkey.Instance, inst.Name).Msg("deleting the template of an earlier image")
		if err := p.Delete(ctx, inst.Name); err != nil {
			errs = append(errs, fmt.Errorf("delete stale template %s: %w", inst.Name, err))
		}
	}
	return errors.Join(errs...)
}

var (
	// errBuilding: another provider creates the template.
	errBuilding = errors.New("another provider is building the template")
	// errRetryLater: the template's last build failed (and was logged)
	// less than templateRetry ago.
	errRetryLater = errors.New("not retried yet")
)

// buildTemplate creates pl's template from the image fp: created and
// started once (LXD shifts the rootfs to the containers' id map on the
// first start), reset, stopped, then marked ready. A failed build deletes
// what it made and is not tried again for templateRetry.
func (p *Provider) buildTemplate(ctx context.Context, pl *pool, name, fp string) (err error) {
	p.tpl.mu.Lock()
	failedAt, failed := p.tpl.failed[name]
	p.tpl.mu.Unlock()
	if failed && time.Since(failedAt) < templateRetry {
		return fmt.Errorf("template %s: its last build failed %s ago; retrying after %s: %w", name, time.Since(failedAt).Round(time.Second), templateRetry, errRetryLater)
	}
	start := time.Now()
	log := p.log.With().Str(logkey.Pool, pl.cfg.Name).Str(logkey.Instance, name).Logger()
	log.Info().Msg("building template")
	ctx, cancel := context.WithTimeout(ctx, templateBuild)
	defer cancel()
	created := false
	defer func() {
		if errors.Is(err, errBuilding) {
			return
		}
		p.metrics.observe(opTemplate, start, err)
		if err == nil {
			log.Info().Dur(logkey.Duration, time.Since(start)).Msg("template ready")
			return
		}
		p.tpl.mu.Lock()
		p.tpl.failed[name] = time.Now()
		p.tpl.mu.Unlock()
		if created {
			dctx, dcancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
			defer dcancel()
			if derr := p.Delete(dctx, name); derr != nil {
				log.Warn().Err(derr).Msg("could not delete a template whose build failed")
			}
		}
	}()

	post := api.InstancesPost{
		Name:   name,
		Type:   api.InstanceType(pl.cfg.InstanceType),
		Source: api.InstanceSource{Type: "image", Fingerprint: fp},
		InstancePut: api.InstancePut{
			Config: map[string]string{
				KeyTemplate:      pl.cfg.Name,
				KeyTemplateImage: fp,
				KeyCreated:       start.UTC().Format(time.RFC3339),
			},
			Devices:  pl.devices,
			Profiles: pl.cfg.Profiles,
		},
	}
	op, err := pl.srv.CreateInstance(post)
	if err == nil {
		_, err = waitOp(ctx, pl.srv, op)
	}
	if err != nil && ctx.Err() == nil {
		if _, _, gerr := pl.srv.GetInstance(name); gerr == nil {
			return errBuilding // another provider's; Run finds it ready later
		}
	}
	if err != nil {
		return fmt.Errorf("create template %s: %w", name, err)
	}
	created = true
	if err := p.startOn(ctx, pl.srv, name); err != nil {
		return fmt.Errorf("start template %s: %w", name, err)
	}
	if err := p.resetTemplate(ctx, pl, name); err != nil {
		return fmt.Errorf("reset template %s: %w", name, err)
	}
	op, err = pl.srv.UpdateInstanceState(name, api.InstanceStatePut{Action: "stop", Force: true, Timeout: -1}, "")
	if err == nil {
		_, err = waitOp(ctx, pl.srv, op)
	}
	if err != nil {
		if inst, _, gerr := pl.srv.GetInstance(name); gerr != nil || inst.StatusCode != api.Stopped {
			return fmt.Errorf("stop template %s: %w", name, err)
		}
	}
	inst, etag, err := pl.srv.GetInstance(name)
	if err != nil {
		return fmt.Errorf("mark template %s ready: %w", name, err)
	}
	put := inst.Writable()
	put.Config[KeyTemplateReady] = "true"
	op, err = pl.srv.UpdateInstance(name, put, etag)
	if err == nil {
		_, err = waitOp(ctx, pl.srv, op)
	}
	if err != nil {
		return fmt.Errorf("mark template %s ready: %w", name, err)
	}
	return nil
}

func (p *Provider) startOn(ctx context.Context, srv server, name string) error {
	op, err := srv.UpdateInstanceState(name, api.InstanceStatePut{Action: "start", Timeout: -1}, "")
	if err != nil {
		return err
	}
	_, err = waitOp(ctx, srv, op)
	return err
}

// resetTemplate runs resetScript in the started template. An image whose
// init ends by itself (the stand-in runner's, without user-data) may have
// stopped the template by then: it is then checked, stopped, to carry no
// machine identity or cloud-init instance, since nothing can reset it.
func (p *Provider) resetTemplate(ctx context.Context, pl *pool, name string) error {
	op, err := pl.srv.ExecInstance(name, api.InstanceExecPost{
		Command:      []string{"/bin/sh", "-c", resetScript},
		RecordOutput: true,
	}, nil)
	var done api.Operation
	if err == nil {
		done, err = waitOp(ctx, pl.srv, op)
	}
	if err == nil {
		code, _ := done.Metadata["return"].(float64)
		if code == 0 {
			return nil
		}
		err = fmt.Errorf("the reset script exited with status %v", code)
	}
	if ctxErr := ctx.Err(); ctxErr != nil {
		return ctxErr
	}
	inst, _, gerr := pl.srv.GetInstance(name)
	if gerr != nil || inst.StatusCode != api.Stopped {
		return err
	}
	// It stopped by itself: nothing ran the reset.
	for _, path := range []string{"/etc/machine-id", "/var/lib/cloud/instance"} {
		if has, ferr := hasContent(pl.srv, name, path); ferr != nil {
			return fmt.Errorf("stopped by itself before its reset; check %s: %w", path, ferr)
		} else if has {
			return fmt.Errorf("stopped by itself before its reset, and %s is not empty: %w", path, err)
		}
	}
	return nil
}

// hasContent reports whether path exists in the instance and is a
// non-empty file, a directory or a symlink.
func hasContent(srv server, name, path string) (bool, error) {
	r, resp, err := srv.GetInstanceFile(name, path)
	if isNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer r.Close()
	if resp.Type != "file" {
		return true, nil
	}
	n, err := io.Copy(io.Discard, io.LimitReader(r, 1))
	if err != nil {
		return false, err
	}
	return n > 0, nil
}

// sourceFor is where a new instance of pl comes from: a copy of the pool's
// ready template when it was made from the image the pool's alias points
// to now, else the image itself (and Run is asked to sync). ok reports a
// template.
func (p *Provider) sourceFor(pl *pool) (src api.InstanceSource, tpl string) {
	if !usesTemplate(pl.cfg) || p.tpl == nil {
		return pl.source, ""
	}
	ref, ok := p.tpl.get(pl.cfg.Name)
	if !ok {
		p.tpl.nudge()
		return pl.source, ""
	}
	if fp, err := imageFingerprint(pl); err != nil || !strings.EqualFold(fp, ref.fingerprint) {
		p.tpl.forget(pl.cfg.Name, ref.name)
		p.tpl.nudge()
		return pl.source, ""
	}
	return api.InstanceSource{Type: "copy", Source: ref.name, InstanceOnly: true}, ref.name
}

// TemplateReady reports whether the pool's instances are copied from a
// ready template now (as far as Run last saw).
func (p *Provider) TemplateReady(pool string) bool {
	_, ok := p.tpl.get(pool)
	return ok
}

// DeleteTemplates deletes every template of the provider's pools, ready or
// not: for tests' cleanup, and for taking a deployment down. Run rebuilds
// them when it runs again.
func (p *Provider) DeleteTemplates(ctx context.Context) error {
	all, err := p.srv.GetInstances(api.InstanceTypeAny)
	if err != nil {
		return fmt.Errorf("list templates: %w", err)
	}
	var errs []error
	for _, inst := range all {
		if _, ours := p.pools[inst.Config[KeyTemplate]]; !ours {
			continue
		}
		p.tpl.forget(inst.Config[KeyTemplate], inst.Name)
		if err := p.Delete(ctx, inst.Name); err != nil {
			errs = append(errs, fmt.Errorf("delete template %s: %w", inst.Name, err))
		}
	}
	return errors.Join(errs...)
}
