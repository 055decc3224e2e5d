package lxdtest

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	lxd "github.com/canonical/lxd/client"
	"github.com/canonical/lxd/shared/api"

	"github.com/ephemera-ci/ephemera/internal/tooltest"
)

// Project creates a throwaway LXD project, named like a test pool
// (t-xxxxxx, which `make lxd-dev` deletes if a run leaves it behind), that
// shares the default project's images and profiles, and deletes it when
// the test ends, after the cleanups registered later (the provider's).
func Project(t testing.TB) string {
	t.Helper()
	c := shared(t)
	name := "t-" + randomHex(3)
	err := c.CreateProject(api.ProjectsPost{Name: name, ProjectPut: api.ProjectPut{Config: map[string]string{
		"features.images": "false", "features.profiles": "false",
	}}})
	if err != nil {
		t.Fatalf("create project %s: %v", name, err)
	}
	t.Cleanup(func() {
		// Whatever a failed test left in it goes first.
		pc := c.UseProject(name)
		if insts, err := pc.GetInstances(api.InstanceTypeAny); err == nil {
			for _, inst := range insts {
				forceDelete(pc, inst.Name)
			}
		}
		if err := c.DeleteProject(name); err != nil {
			t.Errorf("cleanup: delete project %s: %v", name, err)
		}
	})
	return name
}

// BtrfsPool creates a loop-backed btrfs storage pool with a fresh name
// (t-xxxxxx, as `make lxd-dev` cleans up) and deletes it when the test
// ends, after the cleanups registered later. Without btrfs-progs the test
// skips, saying so (or fails under EPHEMERA_REQUIRE_TOOLS=1, as CI sets).
func BtrfsPool(t testing.TB) string {
	t.Helper()
	c := shared(t)
	tooltest.Path(t, "btrfs-progs", "mkfs.btrfs")
	name := "t-" + randomHex(3)
	err := c.CreateStoragePool(api.StoragePoolsPost{Name: name, Driver: "btrfs", StoragePoolPut: api.StoragePoolPut{
		Config: map[string]string{"size": "2GiB"},
	}})
	if err != nil {
		t.Fatalf("create btrfs storage pool %s: %v", name, err)
	}
	t.Cleanup(func() {
		// The image volumes LXD cached on the pool go with it; an
		// instance left on it would keep it, so wait for ephemeral ones
		// to finish deleting themselves.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for {
			err := c.DeleteStoragePool(name)
			if err == nil || api.StatusErrorCheck(err, http.StatusNotFound) {
				return
			}
			select {
			case <-ctx.Done():
				t.Errorf("cleanup: delete storage pool %s: %v", name, err)
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	})
	return name
}

// PublishImage publishes a copy of the test image with files added (path →
// content) under a fresh alias (t-xxxxxx-img), and deletes the image and
// its alias when the test ends. It returns the alias and the fingerprint.
func PublishImage(t testing.TB, files map[string]string) (alias, fingerprint string) {
	t.Helper()
	c := shared(t)
	alias = "t-" + randomHex(3) + "-img"
	src := "t-" + randomHex(3) + "-src"
	op, err := c.CreateInstance(api.InstancesPost{Name: src, Source: api.InstanceSource{Type: "image", Alias: Image}})
	if err == nil {
		_, err = Wait(c, op)
	}
	if err != nil {
		t.Fatalf("create %s to publish: %v", src, err)
	}
	defer forceDelete(c, src)
	for path, content := range files {
		err := c.CreateInstanceFile(src, path, lxdFile(content))
		if err != nil {
			t.Fatalf("write %s into %s: %v", path, src, err)
		}
	}
	op, err = c.CreateImage(api.ImagesPost{Source: &api.ImagesPostSource{Type: "instance", Name: src}}, nil)
	var done api.Operation
	if err == nil {
		done, err = Wait(c, op)
	}
	if err != nil {
		t.Fatalf("publish %s: %v", src, err)
	}
	fingerprint, _ = done.Metadata["fingerprint"].(string)
	if fingerprint == "" {
		t.Fatalf("publish %s: no fingerprint in %v", src, done.Metadata)
	}
	t.Cleanup(func() {
		if op, err := c.DeleteImage(fingerprint); err == nil {
			_, _ = Wait(c, op)
		}
	})
	if err := c.CreateImageAlias(api.ImageAliasesPost{ImageAliasesEntry: api.ImageAliasesEntry{Name: alias, Type: "container", Target: fingerprint}}); err != nil {
		t.Fatalf("alias %s: %v", alias, err)
	}
	t.Cleanup(func() { _ = c.DeleteImageAlias(alias) })
	return alias, fingerprint
}

// PointAlias moves an image alias to another image.
func PointAlias(t testing.TB, alias, fingerprint string) {
	t.Helper()
	if err := shared(t).UpdateImageAlias(alias, api.ImageAliasesEntryPut{Target: fingerprint}, ""); err != nil {
		t.Fatalf("point alias %s at %.12s: %v", alias, fingerprint, err)
	}
}

// ReadFile returns a file's content in an instance of project, or
// exists=false when there is no such file.
func ReadFile(t testing.TB, project, instance, path string) (content string, exists bool) {
	t.Helper()
	r, _, err := shared(t).UseProject(project).GetInstanceFile(instance, path)
	if api.StatusErrorCheck(err, http.StatusNotFound) {
		return "", false
	}
	if err != nil {
		t.Fatalf("read %s in %s: %v", path, instance, err)
	}
	defer r.Close()
	var b strings.Builder
	if _, err := io.Copy(&b, r); err != nil {
		t.Fatalf("read %s in %s: %v", path, instance, err)
	}
	return b.String(), true
}

func lxdFile(content string) lxd.InstanceFileArgs {
	return lxd.InstanceFileArgs{Content: strings.NewReader(content), Mode: 0o644, Type: "file"}
}

// Wait waits until op ends, asking LXD as the provider does (lxdprov's
// waitOp says why not op.Wait), and returns it as it ended.
func Wait(c lxd.InstanceServer, op lxd.Operation) (api.Operation, error) {
	for {
		got, _, err := c.GetOperationWaitSecret(op.Get().ID, "", 10)
		switch {
		case err != nil:
			return api.Operation{}, err
		case !got.StatusCode.IsFinal():
			continue
		case got.StatusCode != api.Success:
			return *got, fmt.Errorf("operation %s: %s: %s", got.ID, got.Status, got.Err)
		}
		return *got, nil
	}
}

// forceDelete stops and deletes an instance, ignoring errors (it may be
// gone already).
func forceDelete(c lxd.InstanceServer, name string) {
	if op, err := c.UpdateInstanceState(name, api.InstanceStatePut{Action: "stop", Force: true, Timeout: -1}, ""); err == nil {
		_, _ = Wait(c, op)
	}
	if op, err := c.DeleteInstance(name); err == nil {
		_, _ = Wait(c, op)
	}
}
