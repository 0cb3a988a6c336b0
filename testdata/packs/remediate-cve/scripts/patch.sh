#!/bin/sh
# patch step of remediate-cve
set -eu
echo "patch $*"
