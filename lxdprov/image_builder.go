package lxdprov

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	lxd "github.com/canonical/lxd/client"
	"github.com/canonical/lxd/shared/api"
	"github.com/rs/zerolog"
)

// imageServer is the part of lxd.InstanceServer an image build calls.
type imageServer interface {
	CreateInstance(post api.InstancesPost) (lxd.Operation, error)
	UpdateInstanceState(name string, state api.InstanceStatePut, etag string) (lxd.Operation, error)
	DeleteInstance(name string) (lxd.Operation, error)
	GetInstance(name string) (*api.Instance, string, error)
	ExecInstance(name string, exec api.InstanceExecPost, args *lxd.InstanceExecArgs) (lxd.Operation, error)
	CreateInstanceFile(name string, path string, args lxd.InstanceFileArgs) error
	GetImageAlias(name string) (*api.ImageAliasesEntry, string, error)
	GetImage(fingerprint string) (*api.Image, string, error)
	GetImages() ([]api.Image, error)
	CreateImage(image api.ImagesPost, args *lxd.ImageCreateArgs) (lxd.Operation, error)
	DeleteImage(fingerprint string) (lxd.Operation, error)
	CreateImageAlias(alias api.ImageAliasesPost) error
	UpdateImageAlias(name string, alias api.ImageAliasesEntryPut, etag string) error
	GetProfile(name string) (*api.Profile, string, error)
	GetInstances(instanceType api.InstanceType) ([]api.Instance, error)
	GetInstancesAllProjects(instanceType api.InstanceType) ([]api.Instance, error)
	HasExtension(extension string) bool
	GetOperationWaitSecret(uuid string, secret string, timeout int) (*api.Operation, string, error)
}

var _ imageServer = lxd.InstanceServer(nil)

// builder is one image build's state, filled in step by step.
type builder struct {
	srv imageServer // the project's
	all imageServer // unscoped, to see every project's instances
	// profiles reads the project's profiles (srv, but for tests).
	profiles interface {
		GetProfile(name string) (*api.Profile, string, error)
	}
	cfg ImageConfig
	log zerolog.Logger

	name string // the builder instance

	tarball       string // local path of the tarball
	removeTarball func() // deletes a downloaded tarball
	hasDiag       bool   // the tarball holds a _diag directory
	source        api.InstanceSource
	baseDesc      string // the base as given, with its fingerprint once known
	baseFP        string
	version       string
	fingerprint   string // the published image
	pruned        []string

	created, deleted, leftover, aliased bool
}

// execResult is what a command run in the builder did.
type execResult struct {
	Code           int
	Stdout, Stderr string
}

// ExitError is a command in the builder that exited non-zero.
type ExitError struct {
	Code   int
	Stderr string // its last lines
}

func (e *ExitError) Error() string {
	if e.Stderr == "" {
		return fmt.Sprintf("exit status %d", e.Code)
	}
	return fmt.Sprintf("exit status %d: %s", e.Code, e.Stderr)
}

// execOpts are how a command runs: as root from / unless set.
type execOpts struct {
	env      map[string]string
	uid, gid uint32
	cwd      string
}

// sh runs script with /bin/sh -c in the builder and fails unless it
// exits 0; it returns the script's standard output, trimmed.
func (b *builder) sh(ctx context.Context, script string) (string, error) {
	return b.shEnv(ctx, script, nil)
}

// shEnv is sh with extra environment variables.
func (b *builder) shEnv(ctx context.Context, script string, env map[string]string) (string, error) {
	r, err := b.exec(ctx, []string{"/bin/sh", "-c", script}, execOpts{env: env})
	if err != nil {
		return "", err
	}
	if r.Code != 0 {
		return "", &ExitError{Code: r.Code, Stderr: lastLines(r.Stderr, 5)}
	}
	return strings.TrimSpace(r.Stdout), nil
}

// exec runs argv in the builder and returns its exit status and output
// (the last 64 KiB of each stream).
func (b *builder) exec(ctx context.Context, argv []string, o execOpts) (execResult, error) {
	env := map[string]string{"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "DEBIAN_FRONTEND": "noninteractive"}
	maps.Copy(env, o.env)
	post := api.InstanceExecPost{Command: argv, WaitForWS: true, Environment: env, User: o.uid, Group: o.gid, Cwd: o.cwd}
	var stdout, stderr tailBuffer
	done := make(chan bool)
	op, err := b.srv.ExecInstance(b.name, post, &lxd.InstanceExecArgs{Stdin: eofReader{}, Stdout: &stdout, Stderr: &stderr, DataDone: done})
	if err != nil {
		return execResult{}, fmt.Errorf("exec %s: %w", argv[0], err)
	}
	finished, err := waitOp(ctx, b.srv, op)
	if err != nil {
		return execResult{}, fmt.Errorf("exec %s: %w", argv[0], err)
	}
	select {
	case <-done:
	case <-ctx.Done():
		return execResult{}, ctx.Err()
	}
	code, ok := finished.Metadata["return"].(float64)
	if !ok {
		return execResult{}, fmt.Errorf("exec %s: LXD reported no exit status", argv[0])
	}
	return execResult{Code: int(code), Stdout: stdout.String(), Stderr: stderr.String()}, nil
}

// eofReader is an empty standard input.
type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }

// tailBuffer keeps the last 64 KiB written to it.
type tailBuffer struct{ b []byte }

const tailMax = 64 << 10

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > tailMax {
		t.b = slices.Clone(t.b[len(t.b)-tailMax:])
	}
	return len(p), nil
}

func (t *tailBuffer) String() string { return string(t.b) }

// lastLines returns the last n non-empty lines of s, joined with "; ".
func lastLines(s string, n int) string {
	var lines []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "; ")
}

// push writes content to path in the builder, owned by root.
func (b *builder) push(path string, content io.ReadSeeker, mode int) error {
	err := b.srv.CreateInstanceFile(b.name, path, lxd.InstanceFileArgs{Content: content, UID: 0, GID: 0, Mode: mode, Type: "file", WriteMode: "overwrite"})
	if err != nil {
		return fmt.Errorf("write %s in the builder: %w", path, err)
	}
	return nil
}

func (b *builder) pushString(path, content string, mode int) error {
	return b.push(path, bytes.NewReader([]byte(content)), mode)
}

// changeState asks LXD to start or stop the builder and waits.
func (b *builder) changeState(ctx context.Context, state api.InstanceStatePut) error {
	op, err := b.srv.UpdateInstanceState(b.name, state, "")
	if err != nil {
		return err
	}
	_, err = waitOp(ctx, b.srv, op)
	return err
}

// forceDelete stops the builder at once and deletes it; one already gone
// is fine.
func (b *builder) forceDelete(ctx context.Context) error {
	inst, _, err := b.srv.GetInstance(b.name)
	if isNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("look up builder %s: %w", b.name, err)
	}
	if inst.StatusCode != api.Stopped {
		if err := b.changeState(ctx, api.InstanceStatePut{Action: "stop", Force: true, Timeout: -1}); err != nil && !isNotFound(err) {
			return fmt.Errorf("stop builder %s: %w", b.name, err)
		}
	}
	op, err := b.srv.DeleteInstance(b.name)
	if err == nil {
		_, err = waitOp(ctx, b.srv, op)
	}
	if err != nil && !isNotFound(err) {
		return fmt.Errorf("delete builder %s: %w", b.name, err)
	}
	return nil
}

// builderNICs returns the devices that give the builder the network it
// should have: every NIC its profile gives it masked (type none), and
// eth0 on cfg.Network when set.
func (b *builder) builderNICs() (map[string]map[string]string, error) {
	devices, err := profileDevices(b.profiles, nil)
	if err != nil {
		return nil, err
	}
	out := map[string]map[string]string{}
	for name, dev := range devices {
		if dev["type"] == "nic" {
			out[name] = map[string]string{"type": "none"}
		}
	}
	if b.cfg.Network != "" {
		out["eth0"] = map[string]string{"type": "nic", "network": b.cfg.Network, "name": "eth0"}
	}
	return out, nil
}

// waitExec polls until the builder runs commands (at once for a container;
// once lxd-agent is up in a VM).
func (b *builder) waitExec(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		r, err := b.exec(ctx, []string{"/bin/sh", "-c", "true"}, execOpts{})
		if err == nil && r.Code == 0 {
			return nil
		}
		if err == nil {
			err = fmt.Errorf("/bin/sh exited %d", r.Code)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the builder runs no commands after %s: %w", timeout, err)
		case <-tick.C:
		}
	}
}

var errNoFingerprint = errors.New("LXD reported no fingerprint for the published image")
