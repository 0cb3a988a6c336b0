#!/bin/sh
# check step of remediate-cve
set -eu
echo "check $*"
