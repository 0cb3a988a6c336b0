#!/bin/sh
# confirm step of remediate-cve
set -eu
echo "confirm $*"
