package lxdprov_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"testing"
	"time"

	lxd "github.com/canonical/lxd/client"
	"github.com/canonical/lxd/shared/api"
	"github.com/google/go-cmp/cmp"

	"github.com/ephemera-ci/ephemera/lxdprov/lxdtest"
)

// runnerImage imports into LXD a tiny image of its own (a unified tarball:
// metadata.yaml and a rootfs holding one random file, so its fingerprint
// is new) with props, as `ephemera image build` publishes one, under a
// fresh alias; both are deleted when the test ends. It returns the alias
// and the fingerprint.
func runnerImage(t *testing.T, props map[string]string) (alias, fingerprint string) {
	t.Helper()
	c := lxdtest.Client(t)
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	meta := fmt.Sprintf("architecture: x86_64\ncreation_date: %d\nproperties:\n  description: ephemera lxdprov test image\n", time.Now().Unix())
	nonce := lxdtest.Name("rv")
	for _, f := range []struct {
		name, body string
		dir        bool
	}{{"metadata.yaml", meta, false}, {"rootfs/", "", true}, {"rootfs/nonce", nonce, false}} {
		h := &tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.body)), ModTime: time.Now(), Typeflag: tar.TypeReg}
		if f.dir {
			h.Mode, h.Typeflag = 0o755, tar.TypeDir
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(f.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	op, err := c.CreateImage(api.ImagesPost{ImagePut: api.ImagePut{Properties: props}}, &lxd.ImageCreateArgs{MetaFile: &buf, MetaName: "image.tar.gz"})
	if err != nil {
		t.Fatalf("import test image: %v", err)
	}
	done, err := lxdtest.Wait(c, op)
	if err != nil {
		t.Fatalf("import test image: %v", err)
	}
	fingerprint, _ = done.Metadata["fingerprint"].(string)
	if fingerprint == "" {
		t.Fatalf("import test image: no fingerprint in %v", done.Metadata)
	}
	t.Cleanup(func() {
		if op, err := c.DeleteImage(fingerprint); err == nil {
			_, _ = lxdtest.Wait(c, op)
		}
	})
	alias = "ephemera-rv-" + nonce
	if err := c.CreateImageAlias(api.ImageAliasesPost{ImageAliasesEntry: api.ImageAliasesEntry{Name: alias, Type: "container", Target: fingerprint}}); err != nil {
		t.Fatalf("alias test image: %v", err)
	}
	t.Cleanup(func() { _ = c.DeleteImageAlias(alias) })
	return alias, fingerprint
}

func TestRunnerVersionsAreReadFromThePoolsImagesAsTheirAliasesNameThem(t *testing.T) {
	lxdtest.Require(t)
	alias, fp := runnerImage(t, map[string]string{"ephemera.runner_version": "2.320.0"})
	byAlias, byFingerprint, plain := lxdtest.Pool(), lxdtest.Pool(), lxdtest.Pool()
	byAlias.Image, byFingerprint.Image = alias, fp
	p := lxdtest.Provider(t, byAlias, byFingerprint, plain)

	got, err := p.RunnerVersions(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{byAlias.Name: "2.320.0", byFingerprint.Name: "2.320.0"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("RunnerVersions (-want +got); the plain test image pins none:\n%s", d)
	}

	// The alias moves (a rollback, a rebuild): the pool's version follows.
	c := lxdtest.Client(t)
	test, _, err := c.GetImageAlias(lxdtest.Image)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.UpdateImageAlias(alias, api.ImageAliasesEntryPut{Target: test.Target}, ""); err != nil {
		t.Fatal(err)
	}
	got, err = p.RunnerVersions(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(map[string]string{byFingerprint.Name: "2.320.0"}, got); d != "" {
		t.Errorf("after moving the alias to an image without a runner version (-want +got):\n%s", d)
	}
}
