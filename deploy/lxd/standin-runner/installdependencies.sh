#!/usr/bin/env bash
# The real runner's bin/installdependencies.sh installs the .NET runtime's
# libraries with the package manager. The stand-in is a static binary and
# needs none: this one only says so.
echo "installdependencies.sh: the stand-in runner is statically linked and needs no dependencies"
