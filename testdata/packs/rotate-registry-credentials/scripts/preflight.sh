#!/bin/sh
# preflight step of rotate-registry-credentials
set -eu
echo "preflight $*"
