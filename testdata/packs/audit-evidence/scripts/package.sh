#!/bin/sh
# package step of audit-evidence
set -eu
echo "package $*"
