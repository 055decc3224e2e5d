package lxdprov_test

import (
	"bufio"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/canonical/lxd/lxd/instance/instancetype"
	"github.com/canonical/lxd/shared/api"
	"github.com/canonical/lxd/shared/validate"
	"go.yaml.in/yaml/v3"

	"github.com/ephemera-ci/ephemera/internal/config"
	"github.com/ephemera-ci/ephemera/lxdprov"
	"github.com/ephemera-ci/ephemera/lxdprov/lxdtest"
)

// lxdDocs reads the options LXD documents (doc/metadata.txt of the LXD
// module this project pins): key → the groups it is documented in, such
// as instance-resource-limits or device-nic-bridged-device-conf.
func lxdDocs(t *testing.T) map[string][]string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/canonical/lxd").Output()
	if err != nil {
		t.Fatalf("locate the LXD module: %v", err)
	}
	f, err := os.Open(filepath.Join(strings.TrimSpace(string(out)), "doc", "metadata.txt"))
	if err != nil {
		t.Fatalf("LXD's documented options: %v", err)
	}
	defer f.Close()
	head := regexp.MustCompile("^```\\{config:option\\} (\\S+) (\\S+)$")
	docs := map[string][]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if m := head.FindStringSubmatch(sc.Text()); m != nil {
			docs[m[1]] = append(docs[m[1]], m[2])
		}
	}
	if err := sc.Err(); err != nil || len(docs) == 0 {
		t.Fatalf("read LXD's documented options: %v (%d found)", err, len(docs))
	}
	return docs
}

// documented reports whether key is documented in a group starting with
// prefix. (Whether an instance key applies to virtual machines is LXD's
// own ConfigKeyChecker's to say.)
func documented(docs map[string][]string, prefix, key string) bool {
	for _, g := range docs[key] {
		if strings.HasPrefix(g, prefix) {
			return true
		}
	}
	return false
}

// runnerProfile is deploy/lxd/runner-profile.yaml, the profile the README
// tells operators to give VM pools.
func runnerProfile(t *testing.T) api.Profile {
	t.Helper()
	b, err := os.ReadFile("../deploy/lxd/runner-profile.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var put api.ProfilePut
	if err := yaml.Unmarshal(b, &put); err != nil {
		t.Fatalf("runner-profile.yaml: %v", err)
	}
	return api.Profile{Name: "ephemera-runner", Description: put.Description, Config: put.Config, Devices: put.Devices}
}

// Virtual machines cannot run on this machine (no KVM); what lxdprov asks
// LXD for a VM pool is checked against LXD's documentation and its own
// validators, from the LXD module this project pins.
func TestAVirtualMachinesConfigUsesLXDsDocumentedVMKeys(t *testing.T) {
	docs := lxdDocs(t)
	srv := newFake()
	srv.SetNetwork(bridge("ephemera-br0"))
	prof := runnerProfile(t)
	srv.SetProfile(prof)
	pool := config.Pool{Name: "vm", Labels: []string{"self-hosted"}, InstanceType: config.InstanceVM, Image: fakeImage,
		CPU: 4, Memory: 8 << 30, Disk: 40 << 30, Max: 3, Profiles: []string{"default", "ephemera-runner"}}
	cfg := fakeConfig(pool)
	cfg.Network = config.RunnerNetwork{Name: "ephemera-br0", EgressDeny: config.DefaultEgressDeny()}
	p := onFake(t, srv, cfg)
	if err := p.Create(t.Context(), lxdtest.Spec("vm")); err != nil {
		t.Fatal(err)
	}
	post := srv.Created()[0]

	if post.Type != api.InstanceTypeVM || !post.Ephemeral {
		t.Errorf("type %q, ephemeral %t; want virtual-machine, ephemeral", post.Type, post.Ephemeral)
	}
	for k, want := range map[string]string{"limits.cpu": "4", "limits.memory": "8GiB"} {
		if post.Config[k] != want {
			t.Errorf("%s = %q, want %q", k, post.Config[k], want)
		}
	}

	// The config the VM runs with: its profiles' and then its own.
	expanded := maps.Clone(prof.Config)
	maps.Copy(expanded, post.Config)
	for k, v := range expanded {
		check, err := instancetype.ConfigKeyChecker(k, instancetype.VM)
		if err != nil {
			t.Errorf("config %s: LXD knows no such VM key: %v", k, err)
			continue
		}
		if err := check(v); err != nil {
			t.Errorf("config %s=%q: LXD's validator refuses it: %v", k, v, err)
		}
		if !strings.HasPrefix(k, "user.") && !documented(docs, "instance-", k) {
			t.Errorf("config %s is not a documented instance option", k)
		}
	}
	if v, ok := expanded["security.secureboot"]; !ok || validate.IsBool(v) != nil {
		t.Errorf("security.secureboot = %q (set %t): want it set, a bool, by the runner profile", v, ok)
	}
	// cloud-init's LXD datasource reads the user-data through /dev/lxd,
	// which lxd-agent serves inside a VM.
	if expanded["security.devlxd"] == "false" {
		t.Error("security.devlxd is off: cloud-init in the VM could not read its user-data")
	}
	if err := validate.IsCloudInitUserData(post.Config[lxdprov.KeyUserData]); err != nil {
		t.Errorf("cloud-init.user-data: LXD refuses it: %v", err)
	}

	root := post.Devices["root"]
	if root["size"] != "40GiB" || validate.IsSize(root["size"]) != nil {
		t.Errorf("root disk size %q, want 40GiB", root["size"])
	}
	for name, dev := range post.Devices {
		group := map[string]string{"disk": "device-disk-", "nic": "device-nic-bridged-"}[dev["type"]]
		if group == "" {
			t.Errorf("device %s of type %q: not expected on a runner", name, dev["type"])
			continue
		}
		for k := range dev {
			if k != "type" && !documented(docs, group, k) {
				t.Errorf("device %s key %s is not documented for a %s device", name, k, dev["type"])
			}
		}
	}
	for k, v := range lxdprov.NICFilters {
		if post.Devices["eth0"][k] != v {
			t.Errorf("eth0 %s = %q, want %q", k, post.Devices["eth0"][k], v)
		}
	}
}

// The builder of a virtual-machine image, as lxdprov asks LXD for it: a
// VM with LXD's documented VM keys, cloud-init's user-data where LXD
// serves it (devlxd through lxd-agent, and the VM's config drive), and
// its profile's NIC masked with a documented "none" device, or on the
// network given.
func TestAVirtualMachineImageBuilderUsesLXDsDocumentedVMKeys(t *testing.T) {
	docs := lxdDocs(t)
	srv := newFake()
	srv.SetProfile(profile("default", map[string]map[string]string{
		"root": rootDisk,
		"eth0": {"type": "nic", "network": "lxdbr0", "name": "eth0"},
	}))
	cfg := lxdprov.ImageConfig{Base: "ubuntu:noble", Tarball: "/srv/runner.tar.gz", Alias: "ephemera-runner-noble", Type: config.InstanceVM}
	for _, network := range []string{"", "ephemera-build"} {
		cfg.Network = network
		post, err := lxdprov.BuilderPost(srv, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if post.Type != api.InstanceTypeVM || post.Ephemeral {
			t.Errorf("type %q, ephemeral %t; want a virtual-machine that outlives its stop (it is published)", post.Type, post.Ephemeral)
		}
		for k, v := range post.Config {
			check, err := instancetype.ConfigKeyChecker(k, instancetype.VM)
			if err != nil {
				t.Errorf("config %s: LXD knows no such VM key: %v", k, err)
				continue
			}
			if err := check(v); err != nil {
				t.Errorf("config %s=%q: LXD's validator refuses it: %v", k, v, err)
			}
			if !strings.HasPrefix(k, "user.") && !documented(docs, "instance-", k) {
				t.Errorf("config %s is not a documented instance option", k)
			}
		}
		if post.Config["security.devlxd"] == "false" || post.Config["security.secureboot"] != "" {
			t.Errorf("devlxd %q, secureboot %q: the builder must keep devlxd and the base's secure boot", post.Config["security.devlxd"], post.Config["security.secureboot"])
		}
		if err := validate.IsCloudInitUserData(post.Config[lxdprov.KeyUserData]); err != nil {
			t.Errorf("builder user-data: LXD refuses it: %v", err)
		}
		eth0 := post.Devices["eth0"]
		switch {
		case network == "" && !maps.Equal(eth0, map[string]string{"type": "none"}):
			t.Errorf("without a network, eth0 = %v; want the profile's NIC masked (type none)", eth0)
		case network != "":
			if eth0["type"] != "nic" || eth0["network"] != network {
				t.Errorf("with network %s, eth0 = %v", network, eth0)
			}
			for k := range eth0 {
				if k != "type" && !documented(docs, "device-nic-", k) {
					t.Errorf("eth0 key %s is not documented for a NIC", k)
				}
			}
		}
		if _, ok := post.Devices["root"]; ok {
			t.Errorf("the builder overrides the root disk %v; its profile's is the one to use", post.Devices["root"])
		}
	}
}
