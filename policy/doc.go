// Package policy is ephemera's pre-job compliance service, compatible with
// repo-policy-compliance: before a job's code runs, the runner's pre-job
// hook (HookScript) asks it, with a one-time token, whether the
// repository's settings make it safe to run that job on a self-hosted
// runner. The answer is 204 (pass), 403 with the reason (the repository
// must change something) or 500 (the service could not tell; it never
// passes what it could not check).
//
// The checks read GitHub through go-github, behind a cache that
// revalidates with ETags, so that a steady stream of checks costs GitHub
// few requests. The policy document and the one-time tokens live in
// JetStream key-value buckets shared by every replica.
package policy
