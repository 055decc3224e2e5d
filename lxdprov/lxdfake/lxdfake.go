// Package lxdfake is an in-memory LXD for unit tests of lxdprov's own
// logic — what it renders into a request, how it maps LXD's errors, when
// it retries — not of LXD's behaviour, which lxdprov tests against the
// real daemon. Server implements the methods of LXD's client that lxdprov
// calls; its zero value is an LXD with the default project and an empty
// default profile, a "default" dir storage pool, no images, instances,
// networks or ACLs, and every API extension.
//
// Operations complete before the call that starts them returns. Failures
// are injected with Fail (the request is refused) and FailOp (the request
// is accepted and its operation fails), both keyed by a [Call].
package lxdfake

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	lxd "github.com/canonical/lxd/client"
	"github.com/canonical/lxd/shared/api"
)

// Method names in a Call: the LXD client's, and the two halves of an
// instance state change.
const (
	CreateInstance      = "CreateInstance"
	StartInstance       = "StartInstance" // the start of a create with Start, or a state change
	StopInstance        = "StopInstance"
	DeleteInstance      = "DeleteInstance"
	GetInstance         = "GetInstance"
	GetInstances        = "GetInstances"
	GetImageAlias       = "GetImageAlias"
	GetImage            = "GetImage"
	GetProfile          = "GetProfile"
	GetProject          = "GetProject"
	GetNetwork          = "GetNetwork"
	UpdateNetwork       = "UpdateNetwork"
	GetNetworkACL       = "GetNetworkACL"
	CreateNetworkACL    = "CreateNetworkACL"
	UpdateNetworkACL    = "UpdateNetworkACL"
	UpdateInstanceState = "UpdateInstanceState"
	GetOperationWait    = "GetOperationWait" // GetOperationWaitSecret
)

// Call is one request the server received: the method and the name it
// was about (empty for listings).
type Call struct {
	Method string
	Name   string
}

// Server is the in-memory LXD. Its zero value is ready to use; it is safe
// for concurrent use.
type Server struct {
	// Fail, when set, is asked before each request; a non-nil error is
	// returned as LXD's answer and nothing changes. It may call the server
	// (to make something happen "meanwhile").
	Fail func(Call) error
	// FailOp, when set, is asked before an operation's work (create, start,
	// stop, delete); a non-nil error becomes the operation's error and
	// that step does nothing. It runs under the server's lock: it must not
	// call the server. A create with Start whose StartInstance step
	// fails leaves the instance created and stopped, as LXD does.
	FailOp func(Call) error
	// NoExtensions lists API extensions the server lacks.
	NoExtensions []string
	// LoseEvents makes operations' WaitContext fail as the pinned LXD
	// client's does when its shared events connection is closed under
	// the operation's listener, whatever the operation did;
	// GetOperationWaitSecret still tells how it ended.
	LoseEvents bool

	mu        sync.Mutex
	calls     []Call
	created   []api.InstancesPost
	instances map[string]*api.Instance
	aliases   map[string]string // alias → fingerprint
	images    map[string]*api.Image
	profiles  map[string]*api.Profile
	projects  map[string]*api.Project
	networks  map[string]*api.Network
	acls      map[string]*api.NetworkACL
	storage   map[string]*api.StoragePool
	ops       map[string]*operation
}

func (s *Server) initLocked() {
	if s.instances != nil {
		return
	}
	s.instances = map[string]*api.Instance{}
	s.aliases = map[string]string{}
	s.images = map[string]*api.Image{}
	s.profiles = map[string]*api.Profile{"default": {Name: "default", Config: map[string]string{}, Devices: map[string]map[string]string{}}}
	s.projects = map[string]*api.Project{"default": {Name: "default", Config: map[string]string{}}}
	s.networks = map[string]*api.Network{}
	s.acls = map[string]*api.NetworkACL{}
	s.storage = map[string]*api.StoragePool{"default": {Name: "default", Driver: "dir"}}
}

// begin records c and asks Fail; it returns with s.mu held when the
// request goes ahead.
func (s *Server) begin(c Call) error {
	s.mu.Lock()
	s.initLocked()
	s.calls = append(s.calls, c)
	fail := s.Fail
	s.mu.Unlock()
	if fail != nil {
		if err := fail(c); err != nil {
			return err
		}
	}
	s.mu.Lock()
	return nil
}

// opFails asks FailOp about c; called with s.mu held (FailOp must not
// call the server).
func (s *Server) opFails(c Call) error {
	if s.FailOp == nil {
		return nil
	}
	return s.FailOp(c)
}

// NotFound is LXD's 404.
func NotFound(what string) error { return api.StatusErrorf(http.StatusNotFound, "%s not found", what) }

// Status is an LXD answer with the given HTTP status.
func Status(code int, msg string) error { return api.StatusErrorf(code, "%s", msg) }

// --- Setting the scene ---

// AddImage adds an image under alias and returns its fingerprint.
func (s *Server) AddImage(alias string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.initLocked()
	fp := fmt.Sprintf("%064x", len(s.images)+1)
	s.images[fp] = &api.Image{Fingerprint: fp}
	s.aliases[alias] = fp
	return fp
}

// RemoveAlias removes an image alias (the image stays).
func (s *Server) RemoveAlias(alias string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.initLocked()
	delete(s.aliases, alias)
}

// SetProfile creates or replaces a profile.
func (s *Server) SetProfile(p api.Profile) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.initLocked()
	s.profiles[p.Name] = &p
}

// RemoveProfile deletes a profile.
func (s *Server) RemoveProfile(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.initLocked()
	delete(s.profiles, name)
}

// SetProject creates or replaces a project.
func (s *Server) SetProject(p api.Project) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.initLocked()
	s.projects[p.Name] = &p
}

// SetNetwork creates or replaces a network.
func (s *Server) SetNetwork(n api.Network) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.initLocked()
	n.Config = maps.Clone(n.Config)
	s.networks[n.Name] = &n
}

// AddInstance puts an instance in place, as if made by someone else.
func (s *Server) AddInstance(inst api.Instance) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.initLocked()
	s.instances[inst.Name] = &inst
}

// RemoveInstance deletes an instance, as if it went on its own.
func (s *Server) RemoveInstance(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.initLocked()
	delete(s.instances, name)
}

// --- Reading what happened ---

// Calls returns every request so far, in order.
func (s *Server) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.calls)
}

// Count returns how many requests of method were made.
func (s *Server) Count(method string) int {
	n := 0
	for _, c := range s.Calls() {
		if c.Method == method {
			n++
		}
	}
	return n
}

// Created returns every create request accepted, in order.
func (s *Server) Created() []api.InstancesPost {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.created)
}

// Instance returns a copy of the named instance, or nil.
func (s *Server) Instance(name string) *api.Instance {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.initLocked()
	if inst := s.instances[name]; inst != nil {
		c := *inst
		c.Config = maps.Clone(inst.Config)
		return &c
	}
	return nil
}

// Network returns a copy of the named network, or nil.
func (s *Server) Network(name string) *api.Network {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.initLocked()
	if n := s.networks[name]; n != nil {
		c := *n
		c.Config = maps.Clone(n.Config)
		return &c
	}
	return nil
}

// ACL returns a copy of the named network ACL, or nil.
func (s *Server) ACL(name string) *api.NetworkACL {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.initLocked()
	if a := s.acls[name]; a != nil {
		c := *a
		return &c
	}
	return nil
}

// --- The LXD client's methods ---

// CreateInstance creates the instance (and starts it when post.Start).
func (s *Server) CreateInstance(post api.InstancesPost) (lxd.Operation, error) {
	if err := s.begin(Call{CreateInstance, post.Name}); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	if _, taken := s.instances[post.Name]; taken {
		// As LXD 5.0 says it: in the operation, from its database.
		return s.op(errors.New(`Failed creating instance record: Add instance info to the database: This "instances" entry already exists`)), nil
	}
	fp := post.Source.Fingerprint
	if post.Source.Alias != "" {
		fp = s.aliases[post.Source.Alias]
	}
	if s.images[fp] == nil {
		return nil, NotFound("Image")
	}
	profiles := post.Profiles
	if profiles == nil {
		profiles = []string{"default"}
	}
	for _, p := range profiles {
		if s.profiles[p] == nil {
			return nil, api.StatusErrorf(http.StatusBadRequest, "Requested profile %q doesn't exist", p)
		}
	}
	s.created = append(s.created, post)
	if err := s.opFails(Call{CreateInstance, post.Name}); err != nil {
		return s.op(err), nil
	}
	inst := &api.Instance{
		Name:       post.Name,
		Type:       string(cmpOr(post.Type, api.InstanceTypeContainer)),
		Status:     api.Stopped.String(),
		CreatedAt:  time.Now().UTC(),
		Config:     maps.Clone(post.Config),
		Devices:    post.Devices,
		Profiles:   profiles,
		Ephemeral:  post.Ephemeral,
		StatusCode: api.Stopped,
	}
	if inst.Config == nil {
		inst.Config = map[string]string{}
	}
	s.instances[post.Name] = inst
	if post.Start {
		if err := s.opFails(Call{StartInstance, post.Name}); err != nil {
			return s.op(err), nil
		}
		startLocked(inst)
	}
	return s.op(nil), nil
}

func cmpOr(t, dflt api.InstanceType) api.InstanceType {
	if t == "" {
		return dflt
	}
	return t
}

func startLocked(inst *api.Instance) {
	inst.StatusCode, inst.Status = api.Running, api.Running.String()
	inst.Config["volatile.last_state.power"] = "RUNNING"
}

// UpdateInstanceState starts or stops the instance; an ephemeral instance
// that stops is deleted.
func (s *Server) UpdateInstanceState(name string, state api.InstanceStatePut, _ string) (lxd.Operation, error) {
	if err := s.begin(Call{UpdateInstanceState, name}); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	inst := s.instances[name]
	if inst == nil {
		return nil, NotFound("Instance")
	}
	switch state.Action {
	case "start":
		if err := s.opFails(Call{StartInstance, name}); err != nil {
			return s.op(err), nil
		}
		startLocked(inst)
	case "stop":
		if err := s.opFails(Call{StopInstance, name}); err != nil {
			return s.op(err), nil
		}
		if inst.Ephemeral {
			delete(s.instances, name)
			return s.op(nil), nil
		}
		inst.StatusCode, inst.Status = api.Stopped, api.Stopped.String()
		inst.Config["volatile.last_state.power"] = "STOPPED"
	default:
		return nil, api.StatusErrorf(http.StatusBadRequest, "unknown action %q", state.Action)
	}
	return s.op(nil), nil
}

// DeleteInstance deletes a stopped instance.
func (s *Server) DeleteInstance(name string) (lxd.Operation, error) {
	if err := s.begin(Call{DeleteInstance, name}); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	inst := s.instances[name]
	if inst == nil {
		return nil, NotFound("Instance")
	}
	if inst.StatusCode != api.Stopped {
		return nil, api.StatusErrorf(http.StatusBadRequest, "Instance is running")
	}
	if err := s.opFails(Call{DeleteInstance, name}); err != nil {
		return s.op(err), nil
	}
	delete(s.instances, name)
	return s.op(nil), nil
}

// GetInstance returns a copy of the instance.
func (s *Server) GetInstance(name string) (*api.Instance, string, error) {
	if err := s.begin(Call{GetInstance, name}); err != nil {
		return nil, "", err
	}
	defer s.mu.Unlock()
	inst := s.instances[name]
	if inst == nil {
		return nil, "", NotFound("Instance")
	}
	c := *inst
	c.Config = maps.Clone(inst.Config)
	return &c, "", nil
}

// GetInstances lists every instance of type t (any type when empty).
func (s *Server) GetInstances(t api.InstanceType) ([]api.Instance, error) {
	if err := s.begin(Call{GetInstances, ""}); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	var out []api.Instance
	for _, name := range slices.Sorted(maps.Keys(s.instances)) {
		inst := *s.instances[name]
		if t != api.InstanceTypeAny && inst.Type != string(t) {
			continue
		}
		inst.Config = maps.Clone(inst.Config)
		out = append(out, inst)
	}
	return out, nil
}

// GetImageAlias finds an alias.
func (s *Server) GetImageAlias(name string) (*api.ImageAliasesEntry, string, error) {
	if err := s.begin(Call{GetImageAlias, name}); err != nil {
		return nil, "", err
	}
	defer s.mu.Unlock()
	fp, ok := s.aliases[name]
	if !ok {
		return nil, "", NotFound("Image alias")
	}
	return &api.ImageAliasesEntry{Name: name, Target: fp}, "", nil
}

// GetImage finds an image by fingerprint or a unique prefix of one.
func (s *Server) GetImage(fingerprint string) (*api.Image, string, error) {
	if err := s.begin(Call{GetImage, fingerprint}); err != nil {
		return nil, "", err
	}
	defer s.mu.Unlock()
	var found *api.Image
	for fp, img := range s.images {
		if fingerprint != "" && strings.HasPrefix(fp, fingerprint) {
			if found != nil {
				return nil, "", api.StatusErrorf(http.StatusBadRequest, "More than one image matches")
			}
			found = img
		}
	}
	if found == nil {
		return nil, "", NotFound("Image")
	}
	c := *found
	return &c, "", nil
}

// GetProfile returns a copy of the profile.
func (s *Server) GetProfile(name string) (*api.Profile, string, error) {
	if err := s.begin(Call{GetProfile, name}); err != nil {
		return nil, "", err
	}
	defer s.mu.Unlock()
	p := s.profiles[name]
	if p == nil {
		return nil, "", NotFound("Profile")
	}
	c := *p
	return &c, "", nil
}

// GetProject returns a copy of the project.
func (s *Server) GetProject(name string) (*api.Project, string, error) {
	if err := s.begin(Call{GetProject, name}); err != nil {
		return nil, "", err
	}
	defer s.mu.Unlock()
	p := s.projects[name]
	if p == nil {
		return nil, "", NotFound("Project")
	}
	c := *p
	return &c, "", nil
}

// HasExtension reports true unless the extension is in NoExtensions.
func (s *Server) HasExtension(extension string) bool {
	return !slices.Contains(s.NoExtensions, extension)
}

// GetNetwork returns a copy of the network.
func (s *Server) GetNetwork(name string) (*api.Network, string, error) {
	if err := s.begin(Call{GetNetwork, name}); err != nil {
		return nil, "", err
	}
	defer s.mu.Unlock()
	n := s.networks[name]
	if n == nil {
		return nil, "", NotFound("Network")
	}
	c := *n
	c.Config = maps.Clone(n.Config)
	return &c, "", nil
}

// UpdateNetwork replaces the network's writable fields.
func (s *Server) UpdateNetwork(name string, put api.NetworkPut, _ string) error {
	if err := s.begin(Call{UpdateNetwork, name}); err != nil {
		return err
	}
	defer s.mu.Unlock()
	n := s.networks[name]
	if n == nil {
		return NotFound("Network")
	}
	n.Config, n.Description = maps.Clone(put.Config), put.Description
	return nil
}

// GetNetworkACL returns a copy of the ACL.
func (s *Server) GetNetworkACL(name string) (*api.NetworkACL, string, error) {
	if err := s.begin(Call{GetNetworkACL, name}); err != nil {
		return nil, "", err
	}
	defer s.mu.Unlock()
	a := s.acls[name]
	if a == nil {
		return nil, "", NotFound("Network ACL")
	}
	c := *a
	return &c, "", nil
}

// CreateNetworkACL creates an ACL.
func (s *Server) CreateNetworkACL(post api.NetworkACLsPost) error {
	if err := s.begin(Call{CreateNetworkACL, post.Name}); err != nil {
		return err
	}
	defer s.mu.Unlock()
	if s.acls[post.Name] != nil {
		return api.StatusErrorf(http.StatusConflict, "An ACL by that name exists already")
	}
	a := &api.NetworkACL{Name: post.Name}
	setACL(a, post.NetworkACLPut)
	s.acls[post.Name] = a
	return nil
}

// UpdateNetworkACL replaces an ACL's writable fields.
func (s *Server) UpdateNetworkACL(name string, put api.NetworkACLPut, _ string) error {
	if err := s.begin(Call{UpdateNetworkACL, name}); err != nil {
		return err
	}
	defer s.mu.Unlock()
	a := s.acls[name]
	if a == nil {
		return NotFound("Network ACL")
	}
	setACL(a, put)
	return nil
}

func setACL(a *api.NetworkACL, put api.NetworkACLPut) {
	a.Description = put.Description
	a.Config = maps.Clone(put.Config)
	a.Egress = slices.Clone(put.Egress)
	a.Ingress = slices.Clone(put.Ingress)
}

// operation is a finished LXD operation. Only the methods lxdprov calls are
// implemented; the others panic (the embedded interface is nil).
type operation struct {
	lxd.Operation
	id        string
	err       error
	lostEvent bool
}

// op records a finished operation (err: its error) for
// GetOperationWaitSecret; called with s.mu held.
func (s *Server) op(err error) lxd.Operation {
	if s.ops == nil {
		s.ops = map[string]*operation{}
	}
	o := &operation{id: fmt.Sprintf("%08x-0000-4000-8000-%012x", len(s.ops)+1, len(s.ops)+1), err: err, lostEvent: s.LoseEvents}
	s.ops[o.id] = o
	return o
}

// errEventsLost is what the pinned LXD client's WaitContext returns when
// its shared events connection was closed under the operation's listener.
var errEventsLost = errors.New("read tcp 127.0.0.1:50312->127.0.0.1:8443: use of closed network connection")

func (o *operation) Wait() error { return o.WaitContext(context.Background()) }

func (o *operation) WaitContext(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if o.lostEvent {
		return errEventsLost
	}
	return o.err
}

// GetOperationWaitSecret returns the operation, finished.
func (s *Server) GetOperationWaitSecret(uuid, _ string, _ int) (*api.Operation, string, error) {
	if err := s.begin(Call{GetOperationWait, uuid}); err != nil {
		return nil, "", err
	}
	defer s.mu.Unlock()
	o := s.ops[uuid]
	if o == nil {
		return nil, "", NotFound("Operation")
	}
	got := o.Get()
	return &got, "", nil
}

func (o *operation) Get() api.Operation {
	if o.err != nil {
		return api.Operation{ID: o.id, Status: api.Failure.String(), StatusCode: api.Failure, Err: o.err.Error()}
	}
	return api.Operation{ID: o.id, Status: api.Success.String(), StatusCode: api.Success}
}
