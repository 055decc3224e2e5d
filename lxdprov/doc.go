// Package lxdprov runs ephemera's runner instances on LXD: it creates one
// ephemeral instance per runner, with cloud-init user-data that starts the
// GitHub runner with its JIT config, installs the pre-job policy hook and
// powers the machine off when the runner exits; it lists the instances of
// this deployment's pools and deletes them.
//
// [Provider] implements scaler.Provisioner. It is the only package that
// imports the LXD client; everything else sees the scaler's seam.
package lxdprov
