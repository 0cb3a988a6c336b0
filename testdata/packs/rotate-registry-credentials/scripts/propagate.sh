#!/bin/sh
# propagate step of rotate-registry-credentials
set -eu
echo "propagate $*"
