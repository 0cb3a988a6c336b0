#!/bin/sh
# verify step of sync-vuln-db
set -eu
echo "verify $*"
