package policy

import _ "embed"

// HookScript is the runner's pre-job hook: a bash script (needing curl and
// jq) that asks the policy service about the job and, unless the answer is
// a pass, stops the runner and powers the machine off. It reads
// EPHEMERA_POLICY_URL and EPHEMERA_POLICY_TOKEN lines from
// ${EPHEMERA_PRE_JOB_ENV:-/etc/ephemera/pre-job.env}; EPHEMERA_POLICY_TIMEOUT
// (seconds, default 60) bounds the request and EPHEMERA_POWEROFF_DELAY
// (seconds, default 10) the time left for the logs to upload.
//
//go:embed hook/pre-job.sh
var HookScript string
