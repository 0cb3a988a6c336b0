#!/usr/bin/env bash
# The main job on embedded defaults: a pack author scaffolds a pack, validates
# it, and plans a live run whose approval gate binds to the plan hash.
# Everything happens in a throwaway STELLA_HOME; nothing outside it is touched.
set -euo pipefail
STELLA=${1:-bin/stella}
STELLA=$(cd "$(dirname "$STELLA")" && pwd)/$(basename "$STELLA")
work=$(mktemp -d "${TMPDIR:-/tmp}/stella-demo.XXXXXX")
trap 'rm -rf "$work"' EXIT
export STELLA_HOME="$work/home"
cd "$work"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "1. scaffold a pack"
"$STELLA" pack init rotate-creds

step "2. validate it"
"$STELLA" pack validate rotate-creds

step "3. plan a dry run (defaults): the approval gate is skipped"
"$STELLA" pack plan --pack rotate-creds

step "4. plan a live run: the gate needs one Packs.Approve approver"
echo '{"dryRun": false, "target": "registry.sealed.local:5000"}' > inputs.json
"$STELLA" pack plan --pack rotate-creds --inputs inputs.json --out plan.json
echo "canonical plan written: $(wc -c < plan.json) bytes; sha256sum gives the plan hash:"
sha256sum plan.json

step "5. a broken manifest reports every problem at once"
sed -e 's/version: 0.1.0/version: "0.1"/' -e 's/approval: change-approval/approval: change-aproval/' rotate-creds/pack.yaml > broken.yaml
mkdir broken && cp -r rotate-creds/* broken/ && cp broken.yaml broken/pack.yaml
if "$STELLA" pack validate broken; then echo "unexpected: broken pack validated"; exit 1; else echo "(exit $? as documented in docs/errors.md)"; fi

step "demo complete"
