#!/bin/sh
# Report the state of the target. Runs in the pack sandbox.
set -eu
echo "checking $1"
