package lxdprov

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/ephemera-ci/ephemera/internal/config"
	"github.com/ephemera-ci/ephemera/internal/logkey"
)

// The properties ephemera sets on the images it builds.
const (
	PropRunnerVersion   = "ephemera.runner_version"
	PropBuiltAt         = "ephemera.built_at"
	PropBase            = "ephemera.base"
	PropBaseFingerprint = "ephemera.base_fingerprint"
	// PropAlias names the image's alias family: the alias it was built
	// for. Pruning keeps the newest images of a family.
	PropAlias = "ephemera.alias"
)

// KeyBuilder marks an image builder instance; its value is the alias
// being built.
const KeyBuilder = "user.ephemera.builder"

// DefaultKeep is how many images of an alias family BuildImage keeps when
// ImageConfig.Keep is zero.
const DefaultKeep = 3

// ImageConfig configures BuildImage.
type ImageConfig struct {
	// LXD says where to build: only its connection fields (Socket, URL,
	// ClientCert, ClientKey, ServerCert) and Project are used.
	LXD Config
	// Base is the image the builder starts from, required: a local alias,
	// a fingerprint (or a unique prefix), or remote:alias for a remote of
	// KnownRemotes (ubuntu:noble).
	Base string
	// Tarball is the GitHub Actions runner tarball, required: a local
	// file, or an http(s) URL, which needs TarballSHA256.
	Tarball string
	// TarballSHA256 is the tarball's SHA-256 in hex: required with a URL,
	// checked when set for a file.
	TarballSHA256 string
	// Alias is the alias the new image gets, required; BuildImage moves
	// it from the image it named before, if any.
	Alias string
	// Type is the image's type. Empty: container.
	Type string
	// Keep is how many images of the alias family to keep, the new one
	// included. Zero: DefaultKeep.
	Keep int
	// Network, when set, gives the builder a NIC on that LXD network
	// (so bin/installdependencies.sh can download). Empty: the builder
	// has no NIC at all; its profiles' NICs are masked.
	Network string
	// Compression is the publish compression algorithm (gzip, zstd, xz,
	// none, …). Empty: LXD's images.compression_algorithm.
	Compression string
	// Progress, when set, is called as each step starts and ends.
	Progress func(StepEvent)
	Log      zerolog.Logger
}

// StepEvent reports a build step starting (Done false) or ending.
type StepEvent struct {
	N, Total int
	Name     string
	Done     bool
	// Once done: what the step did (may be empty), how long it took, and
	// its error if it failed.
	Detail  string
	Elapsed time.Duration
	Err     error
}

// Image is an image BuildImage built.
type Image struct {
	Fingerprint   string
	Alias         string
	RunnerVersion string
	// Pruned are the fingerprints of the older images deleted.
	Pruned []string
}

// StepError is a build that failed at a step. The builder instance is
// gone when BuildImage returns one, unless Leftover names it.
type StepError struct {
	Step string
	Err  error
	// Leftover is the builder instance that could not be deleted, if any.
	Leftover string
}

func (e *StepError) Error() string {
	msg := fmt.Sprintf("image build: step %q: %v", e.Step, e.Err)
	if e.Leftover != "" {
		msg += fmt.Sprintf(" (and the builder instance %s could not be deleted: delete it with lxc delete --force %s)", e.Leftover, e.Leftover)
	}
	return msg
}

func (e *StepError) Unwrap() error { return e.Err }

// Errors BuildImage's steps wrap, for callers that branch on them.
var (
	// ErrBadImageConfig is an ImageConfig BuildImage cannot work with.
	ErrBadImageConfig = errors.New("bad image build configuration")
	// ErrChecksumRequired: a tarball URL came without a SHA-256.
	ErrChecksumRequired = errors.New("a runner tarball URL needs --runner-sha256 (downloads are checked)")
	// ErrChecksumMismatch: the tarball's SHA-256 is not the one given.
	ErrChecksumMismatch = errors.New("runner tarball checksum mismatch")
	// ErrNotRunnerTarball: the tarball is not laid out like the runner's.
	ErrNotRunnerTarball = errors.New("not a runner tarball")
	// ErrBaseNotFound: the base image is not there.
	ErrBaseNotFound = errors.New("base image not found")
)

// MissingToolsError is a base image lacking tools a runner image needs.
type MissingToolsError struct{ Tools []string }

func (e *MissingToolsError) Error() string {
	return "the base image lacks " + strings.Join(e.Tools, ", ") + " (install them in the base image)"
}

// aliasRE is what BuildImage accepts as an alias: LXD's own rules are
// wider, but a name that is also a safe instance-name fragment keeps
// messages and commands simple.
var aliasRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// checkImageConfig refuses what BuildImage cannot work with, and fills
// defaults. It reads nothing but cfg (a tarball file is opened later).
func checkImageConfig(cfg *ImageConfig) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrBadImageConfig, fmt.Sprintf(format, args...))
	}
	switch {
	case cfg.Base == "":
		return bad("a base image is required")
	case cfg.Tarball == "":
		return bad("a runner tarball is required")
	case !aliasRE.MatchString(cfg.Alias):
		return bad("alias %q: want 1-63 characters of [A-Za-z0-9._-], starting with a letter or digit", cfg.Alias)
	case cfg.Keep < 0:
		return bad("keep %d: must be at least 1", cfg.Keep)
	}
	switch cfg.Type {
	case "":
		cfg.Type = config.InstanceContainer
	case config.InstanceContainer, config.InstanceVM:
	default:
		return bad("type %q: want container or virtual-machine", cfg.Type)
	}
	if cfg.Keep == 0 {
		cfg.Keep = DefaultKeep
	}
	if cfg.LXD.Project == "" {
		cfg.LXD.Project = "default"
	}
	if cfg.TarballSHA256 != "" && !sha256RE.MatchString(cfg.TarballSHA256) {
		return bad("runner sha256 %q: want 64 hex digits", cfg.TarballSHA256)
	}
	if isURL(cfg.Tarball) && cfg.TarballSHA256 == "" {
		return ErrChecksumRequired
	}
	if _, _, err := splitRemote(cfg.Base); err != nil {
		return bad("%v", err)
	}
	return nil
}

// BuildImage builds a runner image: it starts a builder instance from
// cfg.Base, installs the runner into it, makes its boot lean, publishes
// it with cfg.Alias and deletes it, then prunes the alias family. The
// package documentation lists the steps. A failure is a *StepError naming
// the step; the builder is deleted whatever happens.
func BuildImage(ctx context.Context, cfg ImageConfig) (*Image, error) {
	if err := checkImageConfig(&cfg); err != nil {
		return nil, err
	}
	conns := &connTracker{}
	defer conns.closeAll()
	srv, where, err := connect(ctx, cfg.LXD, conns)
	if err != nil {
		return nil, fmt.Errorf("lxdprov: %w", err)
	}
	proj := srv.UseProject(cfg.LXD.Project)
	b := &builder{
		srv:      proj,
		profiles: proj,
		all:      srv,
		cfg:      cfg,
		log:      cfg.Log.With().Str("alias", cfg.Alias).Logger(),
		name:     "ephemera-build-" + randomSuffix(),
	}
	b.log.Info().Str("lxd", where).Str("project", cfg.LXD.Project).Str(logkey.Instance, b.name).Msg("building a runner image")
	return b.run(ctx)
}

// step is one named step of a build; run returns what it did, for the
// progress report.
type step struct {
	name string
	run  func(ctx context.Context) (string, error)
}

func (b *builder) run(ctx context.Context) (img *Image, err error) {
	steps := []step{
		{"read runner tarball", b.readTarball},
		{"find base image", b.findBase},
		{"launch builder", b.launch},
		{"wait for boot", b.waitBoot},
		{"check tools", b.checkTools},
		{"create user runner", b.createUser},
		{"install runner", b.installRunner},
		{"read runner version", b.readVersion},
		{"install runner dependencies", b.installDeps},
		{"make boot lean", b.makeLean},
		{"clean cloud-init", b.cleanCloudInit},
		{"stop builder", b.stop},
		{"publish image", b.publish},
		{"move alias", b.moveAlias},
		{"delete builder", b.deleteBuilder},
		{"prune old images", b.prune},
	}
	defer b.cleanup()
	for i, s := range steps {
		ev := StepEvent{N: i + 1, Total: len(steps), Name: s.name}
		b.progress(ev)
		start := time.Now()
		detail, err := s.run(ctx)
		ev.Done, ev.Detail, ev.Elapsed, ev.Err = true, detail, time.Since(start), err
		b.progress(ev)
		if err != nil {
			serr := &StepError{Step: s.name, Err: err}
			b.cleanup()
			if b.leftover {
				serr.Leftover = b.name
			}
			return nil, serr
		}
	}
	return &Image{Fingerprint: b.fingerprint, Alias: b.cfg.Alias, RunnerVersion: b.version, Pruned: b.pruned}, nil
}

func (b *builder) progress(ev StepEvent) {
	if b.cfg.Progress != nil {
		// The callback reports the steps; the log repeats them at debug.
		b.cfg.Progress(ev)
		b.log.Debug().Str("step", ev.Name).Bool("done", ev.Done).Err(ev.Err).Msg("image build")
		return
	}
	switch {
	case !ev.Done:
		b.log.Debug().Str("step", ev.Name).Msg("image build step started")
	case ev.Err != nil:
		b.log.Error().Err(ev.Err).Str("step", ev.Name).Dur(logkey.Duration, ev.Elapsed).Msg("image build step failed")
	default:
		b.log.Info().Str("step", ev.Name).Str("detail", ev.Detail).Dur(logkey.Duration, ev.Elapsed).Msg("image build step done")
	}
}

// cleanup deletes what a failed or finished build leaves: the builder
// instance, the local copy of a downloaded tarball, and a published image
// that never got its alias. It runs once the build's context may have
// ended, on a context of its own.
func (b *builder) cleanup() {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(context.Background()), 2*time.Minute)
	defer cancel()
	if b.removeTarball != nil {
		b.removeTarball()
		b.removeTarball = nil
	}
	if b.fingerprint != "" && !b.aliased {
		if op, err := b.srv.DeleteImage(b.fingerprint); err == nil {
			_, _ = waitOp(ctx, b.srv, op)
		}
		b.fingerprint = ""
	}
	if b.created && !b.deleted {
		if err := b.forceDelete(ctx); err != nil {
			b.log.Error().Err(err).Str(logkey.Instance, b.name).Msg("could not delete the builder instance")
			b.leftover = true
			return
		}
		b.deleted = true
	}
}

func randomSuffix() string {
	var buf [4]byte
	_, _ = rand.Read(buf[:]) // never fails (crypto/rand)
	return hex.EncodeToString(buf[:])
}
