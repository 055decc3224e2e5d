#!/usr/bin/env bash
# ephemera's stand-in runner is registered just in time only: there is
# nothing to configure. Start it with ./run.sh --jitconfig CONFIG.
echo "config.sh: the stand-in runner takes no configuration; start it with ./run.sh --jitconfig CONFIG" >&2
exit 1
