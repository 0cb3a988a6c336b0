#!/bin/sh
# accounts step of audit-evidence
set -eu
echo "accounts $*"
