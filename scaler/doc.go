// Package scaler gives every queued GitHub job a fresh, ephemeral runner
// instance, keeps a warm buffer of idle runners per pool under a hard
// maximum, and reconciles LXD, GitHub and its own state so that nothing is
// left behind. Its state lives in JetStream key-value buckets, so any
// number of replicas can run at once.
package scaler
