#!/bin/sh
# restore-check step of backup-database
set -eu
echo "restore-check $*"
