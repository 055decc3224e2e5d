#!/usr/bin/env bash
# As the real runner's env.sh: records the locale in the runner's .env so
# the listener and the job-started hook start with it.
cd "$(dirname "${BASH_SOURCE[0]}")" || exit 1
touch .env
grep -q '^LANG=' .env || echo "LANG=${LANG:-C.UTF-8}" >>.env
