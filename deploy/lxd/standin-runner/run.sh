#!/usr/bin/env bash
# ephemera's stand-in for the GitHub Actions runner's run.sh: starts the
# listener with the arguments given (run.sh --jitconfig CONFIG), from the
# runner's own directory, and exits with its status.
cd "$(dirname "${BASH_SOURCE[0]}")" || exit 1
exec ./bin/Runner.Listener run "$@"
