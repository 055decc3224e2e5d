package lxdprov

import (
	"io"

	lxd "github.com/canonical/lxd/client"
	"github.com/canonical/lxd/shared/api"
)

// server is the part of lxd.InstanceServer the provider calls. Nothing
// outside this package sees the LXD client.
type server interface {
	CreateInstance(post api.InstancesPost) (lxd.Operation, error)
	UpdateInstanceState(name string, state api.InstanceStatePut, etag string) (lxd.Operation, error)
	DeleteInstance(name string) (lxd.Operation, error)
	GetInstance(name string) (*api.Instance, string, error)
	GetInstances(instanceType api.InstanceType) ([]api.Instance, error)
	GetImageAlias(name string) (*api.ImageAliasesEntry, string, error)
	GetImage(fingerprint string) (*api.Image, string, error)
	GetProfile(name string) (*api.Profile, string, error)
	GetProject(name string) (*api.Project, string, error)
	HasExtension(extension string) bool
	GetStoragePool(name string) (*api.StoragePool, string, error)
	GetOperationWaitSecret(uuid string, secret string, timeout int) (*api.Operation, string, error)

	// Templates (template.go).
	UpdateInstance(name string, instance api.InstancePut, etag string) (lxd.Operation, error)
	ExecInstance(name string, exec api.InstanceExecPost, args *lxd.InstanceExecArgs) (lxd.Operation, error)
	GetInstanceFile(name string, path string) (io.ReadCloser, *lxd.InstanceFileResponse, error)

	// The runner network guard (guard.go).
	GetNetwork(name string) (*api.Network, string, error)
	UpdateNetwork(name string, network api.NetworkPut, etag string) error
	GetNetworkACL(name string) (*api.NetworkACL, string, error)
	CreateNetworkACL(acl api.NetworkACLsPost) error
	UpdateNetworkACL(name string, acl api.NetworkACLPut, etag string) error
}

var _ server = lxd.InstanceServer(nil)
