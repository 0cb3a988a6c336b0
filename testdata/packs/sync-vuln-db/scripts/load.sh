#!/bin/sh
# load step of sync-vuln-db
set -eu
echo "load $*"
