#!/bin/sh
# config step of audit-evidence
set -eu
echo "config $*"
