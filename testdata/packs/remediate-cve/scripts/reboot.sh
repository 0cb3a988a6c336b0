#!/bin/sh
# reboot step of remediate-cve
set -eu
echo "reboot $*"
