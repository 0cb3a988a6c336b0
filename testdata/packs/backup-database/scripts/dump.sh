#!/bin/sh
# dump step of backup-database
set -eu
echo "dump $*"
