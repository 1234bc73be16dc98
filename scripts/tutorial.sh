#!/usr/bin/env bash
# Replays the tutorial's interaction against a running keyrelay with curl:
# two key pairs, then the shared key from each side, which must match.
#   go run ./cmd/keyrelay &    # in another terminal
#   scripts/tutorial.sh [base-url] [group]
set -euo pipefail
base=${1:-http://localhost:8080}
group=${2:-14}

field() { sed -E "s/.*\"$1\":\"([0-9a-f]*)\".*/\1/"; }

# call ARGS...: curl ARGS, printing the response body; on an HTTP error it
# prints the server's answer (which says what was wrong) and fails.
call() {
  local out
  if ! out=$(curl -sS --fail-with-body "$@"); then
    echo "tutorial.sh: keyrelay refused ${1}: ${out:-no answer}" >&2
    return 1
  fi
  printf '%s\n' "$out"
}

a=$(call "$base/generate-keys?group=$group")
b=$(call "$base/generate-keys?group=$group")
echo "alice: $a" | cut -c1-90
echo "bob:   $b" | cut -c1-90
a_priv=$(field private_key <<<"$a"); a_pub=$(field public_key <<<"$a")
b_priv=$(field private_key <<<"$b"); b_pub=$(field public_key <<<"$b")

s1=$(call "$base/generate-shared-key" -H 'Content-Type: application/json' \
  -d "{\"local_private_key\":\"$a_priv\",\"remote_public_key\":\"$b_pub\",\"group\":\"$group\"}")
s2=$(call "$base/generate-shared-key" -H 'Content-Type: application/json' \
  -d "{\"local_private_key\":\"$b_priv\",\"remote_public_key\":\"$a_pub\",\"group\":\"$group\"}")
echo "alice's shared key: $s1"
echo "bob's shared key:   $s2"
if [ "$s1" != "$s2" ]; then
  echo "MISMATCH" >&2; exit 1
fi
echo "shared keys match"
