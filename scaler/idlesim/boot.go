package idlesim

import (
	"math/rand/v2"
	"time"
)

// BootProfile is how long a runner takes from the scaler's decision to
// create it to online on GitHub: Create until the instance runs, then
// Boot until the runner is online; each drawn uniformly from its range.
type BootProfile struct {
	Name     string
	CreateLo time.Duration
	CreateHi time.Duration
	BootLo   time.Duration
	BootHi   time.Duration
}

// VM is the virtual-machine profile the issue names: 10–20 s in all (no
// KVM here to measure it), 1–3 s of it creating the instance.
var VM = BootProfile{Name: "vm", CreateLo: time.Second, CreateHi: 3 * time.Second, BootLo: 9 * time.Second, BootHi: 17 * time.Second}

// Container follows this machine's LXD figures: image → running 0.5–2 s
// (0.1 s create and 0.4 s start for busybox; 1.2–1.8 s for a 290 MB
// image on btrfs, more on dir), then cloud-init and the runner online
// 1–5 s: 1.5–7 s in all.
var Container = BootProfile{Name: "container", CreateLo: 500 * time.Millisecond, CreateHi: 2 * time.Second, BootLo: time.Second, BootHi: 5 * time.Second}

func (b BootProfile) draw(r *rand.Rand) (create, boot time.Duration) {
	u := func(lo, hi time.Duration) time.Duration { return lo + time.Duration(r.Float64()*float64(hi-lo)) }
	return u(b.CreateLo, b.CreateHi), u(b.BootLo, b.BootHi)
}
