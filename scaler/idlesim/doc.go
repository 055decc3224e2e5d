// Package idlesim replays job traces against a pool's idle buffer on a
// simulated clock, to compare min_idle: auto with a fixed min_idle. It is
// a discrete-event simulation of what the scaler does to one pool: every
// queued job gets a runner of its own (after the webhook's latency); a
// job takes an idle runner when there is one and otherwise waits for the
// first runner to come online; every reconcile interval the leader trims
// idle runners past idle_grace above the buffer and tops the buffer up;
// with auto, the buffer is scaler.SizeIdle's — the same function the
// leader runs — fed the same observations: arrivals of the last day, the
// day's level (scaler.DayLevel) computed again every
// scaler.IdleLevelEvery as the leader does, and queued → online times, exact when a job waiting since before the
// runner's instance started took it, otherwise read off the next runner
// listing (an upper bound).
//
// Traces are generated from a seed (traces.go): a steady Poisson stream,
// bursty monorepo pushes in a working day, and a diurnal day. Runner
// boot times are drawn from a profile based on what this machine
// measured for LXD (boot.go).
package idlesim
