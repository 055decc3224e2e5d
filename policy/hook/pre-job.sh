#!/usr/bin/env bash
# ephemera pre-job hook (ACTIONS_RUNNER_HOOK_JOB_STARTED).
#
# Before a job's code runs, ask the ephemera policy service whether the
# repository may run it on this runner, with the one-time token this
# machine was created with. On a pass, exit 0 and the job runs. On
# anything else, say whose fault it is (the repository's on 403, the
# service's on 5xx or no answer), stop Runner.Listener with SIGINT, power
# the machine off a little later so the runner can upload its logs, and
# exit non-zero so that no step of the job runs.
#
# Needs bash, curl and jq. Every setting comes from its own file,
# /etc/ephemera/pre-job.env, never from the environment, which a job can
# shape: KEY=value lines, EPHEMERA_POLICY_URL and EPHEMERA_POLICY_TOKEN
# (required; the token is never printed), EPHEMERA_POLICY_CA_FILE (a PEM
# CA bundle for an https URL; default the system's trust store),
# EPHEMERA_POLICY_TIMEOUT (seconds, default 60) and EPHEMERA_POWEROFF_DELAY
# (seconds, default 10). An https URL is always verified. curl and jq run
# with an empty environment (no proxy, CA or config variables), and PATH
# is fixed here.
set -uo pipefail
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH
unset BASH_ENV ENV CDPATH

env_file=/etc/ephemera/pre-job.env
max_time=60
poweroff_delay=10

log() { printf 'ephemera pre-job: %s\n' "$*"; }

# stop_runner stops the runner, schedules the power-off and exits 1.
stop_runner() {
	log "stopping the runner: the job will not run on this machine"
	pkill -INT -f Runner.Listener || true
	# The power-off waits in its own session, out of the runner's process
	# tree, so that stopping the runner does not take it down.
	local cmd='trap "" HUP INT TERM; sleep "$1"; if [ "$(id -u)" -eq 0 ]; then poweroff; else sudo -n poweroff; fi'
	if command -v setsid >/dev/null 2>&1; then
		setsid -f bash -c "$cmd" ephemera-poweroff "$poweroff_delay" </dev/null >/dev/null 2>&1
	else
		bash -c "$cmd" ephemera-poweroff "$poweroff_delay" </dev/null >/dev/null 2>&1 &
		disown 2>/dev/null || true
	fi
	exit 1
}

url=""
token=""
ca_file=""
if [ -r "$env_file" ]; then
	while IFS= read -r line || [ -n "$line" ]; do
		line=${line%$'\r'}
		case $line in
		EPHEMERA_POLICY_URL=*) url=${line#*=} ;;
		EPHEMERA_POLICY_TOKEN=*) token=${line#*=} ;;
		EPHEMERA_POLICY_CA_FILE=*) ca_file=${line#*=} ;;
		EPHEMERA_POLICY_TIMEOUT=*) max_time=${line#*=} ;;
		EPHEMERA_POWEROFF_DELAY=*) poweroff_delay=${line#*=} ;;
		esac
	done <"$env_file"
fi
case $max_time in '' | *[!0-9]*) max_time=60 ;; esac
case $poweroff_delay in '' | *[!0-9]*) poweroff_delay=10 ;; esac
if [ -z "$url" ] || [ -z "$token" ]; then
	log "the policy service is not configured on this machine ($env_file); this is a fault of the runner setup, not of the repository"
	stop_runner
fi
url=${url%/}
tls=()
case $url in
https://*)
	tls=(--proto =https)
	if [ -n "$ca_file" ]; then
		if [ ! -r "$ca_file" ]; then
			log "the policy service's CA file $ca_file cannot be read; this is a fault of the runner setup, not of the repository"
			stop_runner
		fi
		tls+=(--cacert "$ca_file")
	fi
	;;
http://*) tls=(--proto =http) ;;
*)
	log "the policy service's URL must start with http:// or https://; this is a fault of the runner setup, not of the repository"
	stop_runner
	;;
esac

event=${GITHUB_EVENT_NAME:-}
repository=${GITHUB_REPOSITORY:-}
case $event in
pull_request | pull_request_target) endpoint=pull_request ;;
workflow_dispatch | push | schedule) endpoint=$event ;;
*) endpoint=default ;;
esac

if [ "$endpoint" = pull_request ]; then
	event_file=${GITHUB_EVENT_PATH:-}
	if ! fields=$(env -i PATH="$PATH" jq -er '.pull_request | [.head.repo.full_name, .head.ref, .base.ref, .head.sha] | map(strings) | select(length == 4) | .[]' "$event_file" 2>/dev/null); then
		log "cannot read the pull request from GITHUB_EVENT_PATH; this is a fault of the runner, not of the repository"
		stop_runner
	fi
	{
		IFS= read -r source_repository
		IFS= read -r source_branch
		IFS= read -r target_branch
		IFS= read -r commit_sha
	} <<<"$fields"
	body=$(env -i PATH="$PATH" jq -n \
		--arg repository_name "$repository" \
		--arg source_repository_name "$source_repository" \
		--arg target_branch_name "$target_branch" \
		--arg source_branch_name "$source_branch" \
		--arg commit_sha "$commit_sha" \
		'{repository_name: $repository_name, source_repository_name: $source_repository_name,
		  target_branch_name: $target_branch_name, source_branch_name: $source_branch_name,
		  commit_sha: $commit_sha}')
else
	body=$(env -i PATH="$PATH" jq -n --arg repository_name "$repository" '{repository_name: $repository_name}')
fi

answer=$(mktemp)
trap 'rm -f "$answer"' EXIT
# The token goes in a header read from a file descriptor, not on the
# command line where any process could read it. -q: no .curlrc; env -i:
# no proxy, CA bundle or other variable reaches curl.
code=$(env -i PATH="$PATH" curl -q -sS "${tls[@]}" --max-time "$max_time" --connect-timeout 10 \
	-o "$answer" -w '%{http_code}' \
	-H 'Content-Type: application/json' \
	-H @<(printf 'Authorization: Bearer %s\n' "$token") \
	--data-binary @- \
	"$url/$endpoint/check-run" <<<"$body") || code=000
reason=$(head -c 2000 "$answer" | tr -d '\r')

case $code in
2??)
	log "the repository complies with the runner policy ($endpoint check passed)"
	exit 0
	;;
403)
	log "the repository is not compliant with the runner policy: $reason"
	;;
5?? | 000)
	log "the policy service is at fault, not the repository (HTTP $code): ${reason:-no answer}"
	;;
*)
	log "the policy service refused the check (HTTP $code), a fault of the runner setup, not of the repository: $reason"
	;;
esac
stop_runner
