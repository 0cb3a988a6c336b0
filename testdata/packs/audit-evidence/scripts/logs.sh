#!/bin/sh
# logs step of audit-evidence
set -eu
echo "logs $*"
