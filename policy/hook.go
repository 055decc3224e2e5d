package policy

import _ "embed"

// HookScript is the runner's pre-job hook: a bash script (needing curl and
// jq) that asks the policy service about the job and, unless the answer is
// a pass, stops the runner and powers the machine off. Every setting comes
// from /etc/ephemera/pre-job.env, never from the environment (a job's
// env: reaches the hook): EPHEMERA_POLICY_URL and EPHEMERA_POLICY_TOKEN
// (required), EPHEMERA_POLICY_CA_FILE (CA bundle for an https URL; default
// the system trust store), EPHEMERA_POLICY_TIMEOUT (seconds, default 60)
// and EPHEMERA_POWEROFF_DELAY (seconds, default 10). An https URL is always
// verified; PATH is fixed and curl and jq run with an empty environment,
// so no proxy, CA or curl config variable can redirect the check.
//
//go:embed hook/pre-job.sh
var HookScript string
