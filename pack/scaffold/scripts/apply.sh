#!/bin/sh
# Apply the change to the target. The api-token secret, when set, is in the
# file named by $STELLA_SECRET_API_TOKEN_FILE (mode 0600, removed when the
# step ends). Printing it is safe to try: stella masks it as ***.
set -eu
echo "applying change to $1"
if [ -n "${STELLA_SECRET_API_TOKEN_FILE:-}" ]; then
	echo "authenticating with api token $(cat "$STELLA_SECRET_API_TOKEN_FILE")"
fi
