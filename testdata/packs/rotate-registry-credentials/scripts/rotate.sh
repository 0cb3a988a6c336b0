#!/bin/sh
# rotate step of rotate-registry-credentials
set -eu
echo "rotate $*"
