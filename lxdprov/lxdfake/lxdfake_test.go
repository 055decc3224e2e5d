package lxdfake

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/canonical/lxd/shared/api"
)

func TestTheZeroValueIsAnEmptyLXDWithItsDefaults(t *testing.T) {
	var s Server
	if _, _, err := s.GetProfile("default"); err != nil {
		t.Errorf("default profile: %v", err)
	}
	if _, _, err := s.GetProject("default"); err != nil {
		t.Errorf("default project: %v", err)
	}
	if _, _, err := s.GetImageAlias("any"); !api.StatusErrorCheck(err, http.StatusNotFound) {
		t.Errorf("image alias = %v, want 404", err)
	}
	if insts, err := s.GetInstances(api.InstanceTypeAny); err != nil || len(insts) != 0 {
		t.Errorf("instances = %v, %v; want none", insts, err)
	}
	if !s.HasExtension("instance_create_start") {
		t.Error("an extension is missing from the zero value")
	}
}

func TestInstancesLiveAndDieAsLXDs(t *testing.T) {
	var s Server
	s.AddImage("img")
	post := api.InstancesPost{Name: "a", Source: api.InstanceSource{Type: "image", Alias: "img"}, Start: true,
		InstancePut: api.InstancePut{Ephemeral: true, Config: map[string]string{"user.k": "v"}}}
	op, err := s.CreateInstance(post)
	if err != nil || op.Wait() != nil {
		t.Fatalf("create: %v", err)
	}
	if inst := s.Instance("a"); inst == nil || inst.StatusCode != api.Running || inst.Config["user.k"] != "v" {
		t.Fatalf("instance = %+v, want running with its config", inst)
	}
	// LXD 5.0 takes the request and fails the operation.
	if op, err := s.CreateInstance(post); err != nil {
		t.Errorf("second create = %v, want its operation to fail", err)
	} else if err := op.Wait(); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("second create's operation = %v, want: already exists", err)
	}
	if _, err := s.DeleteInstance("a"); err == nil {
		t.Error("deleting a running instance succeeded")
	}
	op, err = s.UpdateInstanceState("a", api.InstanceStatePut{Action: "stop", Force: true}, "")
	if err != nil || op.Wait() != nil {
		t.Fatalf("stop: %v", err)
	}
	if s.Instance("a") != nil {
		t.Error("an ephemeral instance outlived its stop")
	}
}

func TestFailuresAreInjectedPerCall(t *testing.T) {
	var s Server
	s.AddImage("img")
	boom := errors.New("boom")
	s.FailOp = func(c Call) error {
		if c.Method == StartInstance {
			return boom
		}
		return nil
	}
	op, err := s.CreateInstance(api.InstancesPost{Name: "a", Source: api.InstanceSource{Alias: "img"}, Start: true})
	if err != nil || !errors.Is(op.Wait(), boom) {
		t.Fatalf("create = %v, wait = %v; want the start's failure from the operation", err, op.Wait())
	}
	if inst := s.Instance("a"); inst == nil || inst.StatusCode != api.Stopped {
		t.Errorf("instance = %+v, want it created and stopped", inst)
	}
	s.Fail = func(c Call) error {
		if c.Method == GetInstance {
			return boom
		}
		return nil
	}
	if _, _, err := s.GetInstance("a"); !errors.Is(err, boom) {
		t.Errorf("GetInstance = %v, want boom", err)
	}
	if got := s.Count(GetInstance); got != 1 {
		t.Errorf("%d GetInstance calls recorded, want 1", got)
	}
}
