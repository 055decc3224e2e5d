package standin

import "time"

// Profile is how long a provider takes for each step of a runner's life.
type Profile struct {
	Name string
	// Create is an instance's creation and start: Provisioner.Create
	// returns after it (LXD's create with start, which returns once the
	// instance runs).
	Create Dist
	// Boot is from the instance running to its runner online on GitHub
	// (the guest's boot, cloud-init, the runner's start).
	Boot Dist
	// Delete is a force-stop and delete.
	Delete Dist
}

// LXDContainer is an ephemeral LXD container as measured on this
// project's 2-core machine (README, Performance; bench/results.json,
// BenchmarkLXDBusyboxContainers seq-create and seq-delete: create with
// start p50 1,542 ms, p99 3,763 ms; delete p50 1,421 ms, p99 2,231 ms),
// with the stand-in runner's start after it (queued → running p50
// 1,512 ms in BenchmarkQueuedToRunningOnLXD leaves well under a second
// for it).
func LXDContainer() Profile {
	return Profile{
		Name:   "lxd-container",
		Create: LogNormal{P50: 1542 * time.Millisecond, P99: 3763 * time.Millisecond},
		Boot:   Uniform{Min: 300 * time.Millisecond, Max: 900 * time.Millisecond},
		Delete: LogNormal{P50: 1421 * time.Millisecond, P99: 2231 * time.Millisecond},
	}
}

// VM is a virtual machine: created like a container, then 10–20 s of
// boot before its runner is online.
func VM() Profile {
	p := LXDContainer()
	p.Name = "vm"
	p.Boot = Uniform{Min: 10 * time.Second, Max: 20 * time.Second}
	return p
}

// Scaled is p with every latency divided by f: the provider of a run
// whose clock is compressed f times.
func (p Profile) Scaled(f float64) Profile {
	if f <= 0 || f == 1 {
		return p
	}
	return Profile{Name: p.Name, Create: p.Create.Scaled(f), Boot: p.Boot.Scaled(f), Delete: p.Delete.Scaled(f)}
}
