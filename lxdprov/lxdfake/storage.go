package lxdfake

import (
	"io"
	"maps"
	"net/http"

	lxd "github.com/canonical/lxd/client"
	"github.com/canonical/lxd/shared/api"
)

// More method names in a Call.
const (
	GetStoragePool  = "GetStoragePool"
	UpdateInstance  = "UpdateInstance"
	ExecInstance    = "ExecInstance"
	GetInstanceFile = "GetInstanceFile"
)

// SetStoragePool adds or replaces a storage pool. The zero Server has one,
// "default", on the dir driver.
func (s *Server) SetStoragePool(p api.StoragePool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.initLocked()
	s.storage[p.Name] = &p
}

// GetStoragePool returns a copy of the storage pool.
func (s *Server) GetStoragePool(name string) (*api.StoragePool, string, error) {
	if err := s.begin(Call{GetStoragePool, name}); err != nil {
		return nil, "", err
	}
	defer s.mu.Unlock()
	p := s.storage[name]
	if p == nil {
		return nil, "", NotFound("Storage pool")
	}
	c := *p
	return &c, "", nil
}

// UpdateInstance replaces the instance's config, devices and profiles.
func (s *Server) UpdateInstance(name string, put api.InstancePut, _ string) (lxd.Operation, error) {
	if err := s.begin(Call{UpdateInstance, name}); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	inst := s.instances[name]
	if inst == nil {
		return nil, NotFound("Instance")
	}
	inst.Config = maps.Clone(put.Config)
	inst.Devices = put.Devices
	inst.Profiles = put.Profiles
	inst.Ephemeral = put.Ephemeral
	return s.op(nil), nil
}

// ExecInstance is refused: the fake runs no instance's programs.
func (s *Server) ExecInstance(name string, _ api.InstanceExecPost, _ *lxd.InstanceExecArgs) (lxd.Operation, error) {
	if err := s.begin(Call{ExecInstance, name}); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	return nil, api.StatusErrorf(http.StatusNotImplemented, "lxdfake runs no programs")
}

// GetInstanceFile finds no file: the fake's instances have no filesystem.
func (s *Server) GetInstanceFile(name, _ string) (io.ReadCloser, *lxd.InstanceFileResponse, error) {
	if err := s.begin(Call{GetInstanceFile, name}); err != nil {
		return nil, nil, err
	}
	defer s.mu.Unlock()
	return nil, nil, NotFound("File")
}
