#!/usr/bin/env bash
# Start `ephemera serve` with deploy/dev/config.yaml, creating development
# secrets under .dev/ on first use. Usage: deploy/dev/run.sh [BINARY]
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=${1:-bin/ephemera}
mkdir -p .dev
umask 077
for f in webhook-secret policy-admin-token github-token; do
  [ -s ".dev/$f" ] || head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > ".dev/$f"
done
echo "ephemera serve: webhook http://127.0.0.1:8080/webhook (secret in .dev/webhook-secret), metrics http://127.0.0.1:9090/metrics" >&2
exec "$bin" serve --config deploy/dev/config.yaml --log-format console
