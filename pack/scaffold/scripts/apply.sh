#!/bin/sh
# Apply the change to the target. The api-token secret, when set, is in the
# file named by $STELLA_SECRET_API_TOKEN_FILE.
set -eu
echo "applying change to $1"
