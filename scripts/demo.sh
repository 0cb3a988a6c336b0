#!/usr/bin/env bash
# The main job on embedded defaults: a pack author scaffolds a pack, validates
# it, plans it, builds and signs it, carries it across the gap on split media,
# and the sealed operator runs it: the run parks at its approval gate, an
# offline approver signs, the run resumes and succeeds, and its signed evidence is verified
# on a machine with only a trust store.
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

step "6. connected side: a publisher key, a signed build, a bundle split for small media"
export STELLA_HOME="$work/connected"
printf 'demo publisher passphrase\n' > "$work/key.pass"
export STELLA_KEY_PASSPHRASE_FILE="$work/key.pass"
"$STELLA" key generate --dir "$work/keys" publisher
"$STELLA" pack build --sign --key "$work/keys/publisher.key" rotate-creds
mkdir -p "$work/media"   # the removable media (stella never creates output folders)
"$STELLA" pack export -o "$work/media/packs.stella.tar" --split 8KiB rotate-creds:0.1.0
ls "$work/media"

step "7. sealed side: trust the publisher, import from the first part with signatures required"
export STELLA_HOME="$work/sealed"
"$STELLA" trust add --key "$work/keys/publisher.pub" --role publisher publisher
"$STELLA" pack import --require-signature --bundle "$work/media/packs.stella.tar.001"
"$STELLA" pack show rotate-creds:0.1.0 | sed -n '1,3p;/signatures:/,$p'

step "8. the plan from the sealed cache has the same hash as the plan from the folder"
"$STELLA" pack plan --pack rotate-creds:0.1.0 --inputs inputs.json | sed -n '1,2p'

step "9. a corrupted transfer is refused and leaves nothing behind"
export STELLA_HOME="$work/sealed2"
STELLA_HOME="$work/connected" "$STELLA" pack export -o "$work/whole.tar" rotate-creds:0.1.0 >/dev/null
# flip one byte inside a pack file's content (the scaffold's apply script)
offset=$(grep -aboF 'applying change to' "$work/whole.tar" | head -1 | cut -d: -f1)
printf 'X' | dd of="$work/whole.tar" bs=1 seek="$offset" conv=notrunc status=none
if "$STELLA" pack import --bundle "$work/whole.tar"; then echo "unexpected: corrupt bundle imported"; exit 1; else echo "(exit $?)"; fi
"$STELLA" pack list

step "10. the sealed operator runs the pack: the run parks at its approval gate"
export STELLA_HOME="$work/sealed"
printf '# throwaway demo identity\n%s\n' "AGE-SECRET-KEY-18K6XQ6TP3UFN4HRDXX554HPT66W659FMNA8U2YCGAX8U4L09PXAS07F66U" > "$work/demo.agekey"
export STELLA_VAULT_IDENTITY_FILE="$work/demo.agekey"
"$STELLA" vault init --identity "$work/demo.agekey"
printf 'demo-api-token-0123456789' | "$STELLA" vault put rotate-creds/api-token
echo "steps run isolated: own network namespace (loopback only), no capabilities, limits enforced"
"$STELLA" --output json pack run --pack rotate-creds:0.1.0 --inputs inputs.json > "$work/run.json"
run_id=$(sed -n 's/.*"runId": "\(.*\)".*/\1/p' "$work/run.json")
plan_hash=$(sed -n 's/.*"planHash": "sha256:\([0-9a-f]*\)".*/\1/p' "$work/run.json")
"$STELLA" pack runs show "$run_id" | sed -n '1,2p;/^steps:/,/^timeline:/{/^timeline:/!p}'
echo "the run's plan is saved; a request for its gate goes out on the media:"
"$STELLA" pack approve --offline-request --run "$run_id" --gate approve -o "$work/media/request.stella.tar"

step "11. the approver, on a machine that never touches a network, reviews and signs"
export STELLA_HOME="$work/approver"
"$STELLA" vault init
"$STELLA" key generate --dir "$work/approver-pub" --vault alice alice
"$STELLA" pack approve review "$work/media/request.stella.tar"
"$STELLA" pack approve sign --yes --key vault:alice --comment "change window confirmed" -o "$work/media/response.stella.tar" "$work/media/request.stella.tar"

step "12. back on the sealed side: trust the approver, import the response; the gate opens"
export STELLA_HOME="$work/sealed"
"$STELLA" trust add --key "$work/approver-pub/alice.pub" --role Packs.Approve alice
"$STELLA" pack approve --offline-response "$work/media/response.stella.tar"
"$STELLA" pack approvals show "${plan_hash:0:12}" approve
echo "importing the same response again changes nothing:"
"$STELLA" pack approve --offline-response "$work/media/response.stella.tar"

step "13. resume the run: the gate is satisfied, the remaining steps run"
"$STELLA" pack runs resume --run "$run_id"
echo "the api token reached the step as a 0600 file and is masked in everything stella wrote:"
"$STELLA" pack runs logs --step apply "$run_id"
"$STELLA" pack runs show "$run_id" | sed -n '/^isolation:/,/^timeline:/{/^timeline:/!p}'
"$STELLA" pack runs list
"$STELLA" cache verify

step "14. the run's evidence goes out on the media, signed by the sealed host's runner key"
"$STELLA" key generate --dir "$work/runner-pub" --vault runner runner
"$STELLA" pack runs export --run "$run_id" --key vault:runner -o "$work/media/run.evidence.tar"
if grep -aq 'demo-api-token-0123456789' "$work/media/run.evidence.tar"; then echo "unexpected: the token is in the evidence"; exit 1; fi
echo "the api token appears nowhere in the evidence file"

step "15. connected side, offline: a verifier with only a trust store checks every part"
export STELLA_HOME="$work/verifier"
"$STELLA" trust add --key "$work/runner-pub/runner.pub" --role Packs.Run --tenant default runner
"$STELLA" trust add --key "$work/approver-pub/alice.pub" --role Packs.Approve alice
"$STELLA" pack evidence verify "$work/media/run.evidence.tar"

step "demo complete"
