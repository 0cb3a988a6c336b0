#!/bin/sh
# verify step of sync-vuln-db: prints what it would check, and reports the
# snapshot's age (a real pack reads it from the snapshot's manifest).
set -eu
echo "verify $*"
echo "ageDays=7" >> "$STELLA_OUTPUT"
