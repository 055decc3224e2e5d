package lxdprov

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"time"

	"github.com/canonical/lxd/shared/api"

	"github.com/ephemera-ci/ephemera/internal/logkey"
	"github.com/ephemera-ci/ephemera/scaler"
)

// The config keys ephemera sets on every instance.
const (
	KeyPool     = "user.ephemera.pool"
	KeyJob      = "user.ephemera.job"
	KeyCreated  = "user.ephemera.created"
	KeyUserData = "cloud-init.user-data"
)

// Create creates and starts one ephemeral instance for spec. It returns
// once the instance runs, with an error wrapping scaler.ErrInstanceExists,
// ErrNoCapacity or ErrMisconfigured where one applies. When ctx ends first
// it stops waiting and returns ctx's error; the instance may then still
// come up, and List shows it.
func (p *Provider) Create(ctx context.Context, spec scaler.InstanceSpec) (err error) {
	start := time.Now()
	defer func() { p.metrics.observe(opCreate, start, err) }()

	pl, ok := p.pools[spec.Pool]
	if !ok {
		return fmt.Errorf("create instance %s: unknown pool %q: %w", spec.Name, spec.Pool, scaler.ErrMisconfigured)
	}
	if err := checkSpec(spec); err != nil {
		return fmt.Errorf("create instance: %w", err)
	}
	userData, err := renderUserData(p.hook, p.policyURL, spec.PolicyToken, spec.JITConfig, pl.snippet)
	if err != nil {
		return fmt.Errorf("create instance %s: %w", spec.Name, err)
	}
	post := pl.post(spec, userData, start)
	post.Start = p.createStart

	log := p.log.With().Str(logkey.Instance, spec.Name).Str(logkey.Pool, spec.Pool).Int64(logkey.Job, spec.JobID).Logger()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("create instance %s: %w", spec.Name, err)
	}
	source := SourceImage
	if src, tpl := p.sourceFor(pl); tpl != "" {
		tplPost := post
		tplPost.Source = src
		tplPost.Config = maps.Clone(post.Config)
		// A copy inherits its source's config: these are the template's.
		for _, k := range []string{KeyTemplate, KeyTemplateImage, KeyTemplateReady} {
			tplPost.Config[k] = ""
		}
		err := p.createOnce(ctx, pl, tplPost)
		switch {
		case err == nil:
			source = SourceTemplate
		case ctx.Err() != nil:
			return fmt.Errorf("create instance %s: %w", spec.Name, ctx.Err())
		case p.exists(pl, spec.Name):
			return p.createError(ctx, pl, spec.Name, userData, err)
		default:
			// The template went (rebuilt, deleted): the image never
			// fails a job for it.
			log.Warn().Err(err).Str(logkey.Template, tpl).Msg("copy of the template failed; creating from the image")
			p.tpl.forget(pl.cfg.Name, tpl)
			p.tpl.nudge()
		}
	}
	if source == SourceImage {
		if err := p.createOnce(ctx, pl, post); err != nil {
			return p.createError(ctx, pl, spec.Name, userData, err)
		}
	}
	if !p.createStart {
		if err := p.startInstance(ctx, spec.Name); err != nil {
			if ctx.Err() == nil {
				// Not started: remove it, so it holds no slot.
				if derr := p.Delete(ctx, spec.Name); derr != nil {
					log.Warn().Err(derr).Msg("could not delete an instance that failed to start")
				}
			}
			return fmt.Errorf("start instance %s: %w", spec.Name, err)
		}
	}
	p.metrics.creates.WithLabelValues(pl.cfg.Name, source).Inc()
	log.Debug().Dur(logkey.Duration, time.Since(start)).Str(logkey.Source, source).Msg("instance started")
	return nil
}

// createOnce sends one create request and waits for its operation.
func (p *Provider) createOnce(ctx context.Context, pl *pool, post api.InstancesPost) error {
	op, err := pl.srv.CreateInstance(post)
	if err == nil {
		_, err = waitOp(ctx, pl.srv, op)
	}
	return err
}

// exists reports whether LXD has an instance of that name.
func (p *Provider) exists(pl *pool, name string) bool {
	_, _, err := pl.srv.GetInstance(name)
	return err == nil
}

// post is the LXD request that creates spec's instance.
func (pl *pool) post(spec scaler.InstanceSpec, userData string, now time.Time) api.InstancesPost {
	cfg := map[string]string{
		KeyPool:     spec.Pool,
		KeyJob:      strconv.FormatInt(spec.JobID, 10),
		KeyCreated:  now.UTC().Format(time.RFC3339),
		KeyUserData: userData,
	}
	if pl.cfg.CPU > 0 {
		cfg["limits.cpu"] = strconv.Itoa(pl.cfg.CPU)
	}
	if pl.cfg.Memory > 0 {
		cfg["limits.memory"] = pl.cfg.Memory.String()
	}
	return api.InstancesPost{
		Name:   spec.Name,
		Type:   api.InstanceType(pl.cfg.InstanceType),
		Source: pl.source,
		InstancePut: api.InstancePut{
			Config:    cfg,
			Devices:   pl.devices,
			Profiles:  pl.cfg.Profiles,
			Ephemeral: true,
		},
	}
}

func (p *Provider) startInstance(ctx context.Context, name string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	op, err := p.srv.UpdateInstanceState(name, api.InstanceStatePut{Action: "start", Timeout: -1}, "")
	if err != nil {
		return err
	}
	_, err = waitOp(ctx, p.srv, op)
	return err
}

// createError explains a failed create in the scaler's terms. LXD reports
// some failures only as an operation's message, so what a status code does
// not say is found by asking LXD again: does the name exist, do the image
// and profiles still exist.
func (p *Provider) createError(ctx context.Context, pl *pool, name, userData string, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil && errors.Is(err, ctxErr) {
		return fmt.Errorf("create instance %s: %w", name, ctxErr)
	}
	if capacityError(err) {
		return fmt.Errorf("create instance %s: %w: %w", name, scaler.ErrNoCapacity, err)
	}
	if inst, _, gerr := p.srv.GetInstance(name); gerr == nil {
		if nameTaken(err) || inst.Config[KeyUserData] != userData {
			// Refused for its name, or not made by this request:
			// someone else's, or this spec's from an earlier create.
			return fmt.Errorf("create instance %s: %w (%v)", name, scaler.ErrInstanceExists, err)
		}
		// Made by this request (its user-data holds this runner's JIT
		// config), which then failed: starting it, or later. Remove it,
		// so it holds no slot.
		if derr := p.Delete(ctx, name); derr != nil {
			p.log.Warn().Err(derr).Str(logkey.Instance, name).Msg("could not delete an instance whose create failed")
		}
		if neverStarted(inst) {
			return fmt.Errorf("start instance %s: %w", name, err)
		}
		return fmt.Errorf("create instance %s: %w", name, err)
	}
	if _, ierr := resolveImage(pl.srv, pl.cfg.Image); errors.Is(ierr, scaler.ErrMisconfigured) {
		return fmt.Errorf("create instance %s: pool %s: %w", name, pl.cfg.Name, ierr)
	}
	if _, perr := profileDevices(pl.srv, pl.cfg.Profiles); errors.Is(perr, scaler.ErrMisconfigured) {
		return fmt.Errorf("create instance %s: pool %s: %w", name, pl.cfg.Name, perr)
	}
	if p.atInstanceLimit() {
		return fmt.Errorf("create instance %s: project %s is at its limits.instances: %w: %w", name, p.project, scaler.ErrNoCapacity, err)
	}
	return fmt.Errorf("create instance %s: %w", name, err)
}

// atInstanceLimit reports whether the project holds as many instances as
// its limits.instances allows (LXD refuses more with a plain 500).
func (p *Provider) atInstanceLimit() bool {
	proj, _, err := p.srv.GetProject(p.project)
	if err != nil {
		return false
	}
	limit, err := strconv.Atoi(proj.Config["limits.instances"])
	if err != nil {
		return false
	}
	insts, err := p.srv.GetInstances(api.InstanceTypeAny)
	return err == nil && len(insts) >= limit
}
