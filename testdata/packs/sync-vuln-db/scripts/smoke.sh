#!/bin/sh
# smoke step of sync-vuln-db
set -eu
echo "smoke $*"
