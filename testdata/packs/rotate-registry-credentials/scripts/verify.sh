#!/bin/sh
# verify step of rotate-registry-credentials
set -eu
echo "verify $*"
