// Package standin is a provisioner stand-in for the scale harness
// (e2e/scale): an HTTP service, run by the harness, that keeps instances
// in memory and takes as long to create, boot and delete them as a
// Profile says — the latencies of LXD measured on this machine, or of a
// virtual machine — and a scaler.Provisioner client for it, which the
// harness's scaler replica processes (e2e/scale/replica) use instead of
// lxdprov. One service serves every replica, so that each lists the same
// instances, as replicas sharing one LXD do.
//
// Once an instance has booted, the service brings its runner online on
// the GitHub stand-in (Config.Online); the runner takes a job and
// completes it there, and when it exits (Server.Exit) its ephemeral
// instance powers off and disappears after a delete's latency.
//
// The service records when each instance was asked for, ran and came
// online (Server.Records), which the harness joins with the time each
// job was queued. The runners' JIT configs and policy tokens never reach
// it: the client sends the instance's name, pool and job only.
package standin
