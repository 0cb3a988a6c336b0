#!/bin/sh
# prune step of backup-database
set -eu
echo "prune $*"
