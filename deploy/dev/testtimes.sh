#!/usr/bin/env bash
# Reads `go test` output on stdin and prints each package's test time,
# slowest first, and the total. A package past half of TIMEOUT (what
# `go test -timeout` was given: 20m, 90s, 1h) is marked, so a test binary
# growing towards the timeout shows long before it hits it.
# Usage: go test ./... | testtimes.sh 20m
set -euo pipefail
timeout=${1:-20m}
times=$(awk '($1 == "ok" || $1 == "FAIL") && $3 ~ /^[0-9.]+s$/ { print substr($3, 1, length($3) - 1), $1, $2 }' | sort -rn)
[[ -n $times ]] || exit 0
echo "test time per package, slowest first (-timeout $timeout):"
awk -v timeout="$timeout" '
	BEGIN {
		t = timeout
		while (match(t, /^[0-9.]+[hms]/)) {
			n = substr(t, 1, RLENGTH - 1); u = substr(t, RLENGTH, 1)
			limit += n * (u == "h" ? 3600 : u == "m" ? 60 : 1)
			t = substr(t, RLENGTH + 1)
		}
		limit /= 2
	}
	{
		printf "%8.1fs  %-4s  %s%s\n", $1, $2, $3, ($1 > limit ? "   <- over half the timeout" : "")
		total += $1
	}
	END { printf "%8.1fs  summed over %d packages\n", total, NR }' <<<"$times"
