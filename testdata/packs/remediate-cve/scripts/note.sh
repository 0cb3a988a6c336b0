#!/bin/sh
# note step of remediate-cve
set -eu
echo "note $*"
