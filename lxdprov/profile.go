package lxdprov

import (
	"context"
	"fmt"
	"net/http"

	"github.com/canonical/lxd/shared/api"
)

// LoopbackProfile creates or replaces the profile name with one proxy
// device that makes the host's 127.0.0.1:port reachable at 127.0.0.1:port
// inside every instance using the profile — how runners with no NIC reach
// host services (the demo's GitHub stand-in and policy service). Only the
// connection fields of cfg are used. The returned function deletes the
// profile.
func LoopbackProfile(ctx context.Context, cfg Config, name string, port int) (remove func() error, err error) {
	conns := &connTracker{}
	srv, where, err := connect(ctx, cfg, conns)
	if err != nil {
		conns.closeAll()
		return nil, err
	}
	if cfg.Project != "" {
		srv = srv.UseProject(cfg.Project)
	}
	addr := fmt.Sprintf("tcp:127.0.0.1:%d", port)
	put := api.ProfilePut{
		Description: "ephemera: host 127.0.0.1:" + fmt.Sprint(port) + " inside instances, over loopback",
		Config:      map[string]string{},
		Devices: map[string]map[string]string{
			"ephemera-loopback": {"type": "proxy", "listen": addr, "connect": addr, "bind": "instance"},
		},
	}
	if _, etag, gerr := srv.GetProfile(name); gerr == nil {
		err = srv.UpdateProfile(name, put, etag)
	} else if api.StatusErrorCheck(gerr, http.StatusNotFound) {
		err = srv.CreateProfile(api.ProfilesPost{Name: name, ProfilePut: put})
	} else {
		err = gerr
	}
	if err != nil {
		conns.closeAll()
		return nil, fmt.Errorf("profile %s on %s: %w", name, where, err)
	}
	return func() error {
		defer conns.closeAll()
		if err := srv.DeleteProfile(name); err != nil && !api.StatusErrorCheck(err, http.StatusNotFound) {
			return fmt.Errorf("delete profile %s: %w", name, err)
		}
		return nil
	}, nil
}
