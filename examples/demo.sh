#!/usr/bin/env bash
# `make demo`: the main job of baker on the local cloud, start to finish, on this machine.
#
#   1. start the local cloud (AWS emulator + build host, in a loopback-only network namespace)
#   2. release dev: package -> render -> packer build (Ansible over SSH) -> terraform -> healthy fleet
#   3. bake again: same recipe, so a cache hit (no Packer run)
#   4. a new AMI rolled out: every instance replaced, health-gated
#   5. a bad AMI: its instances never turn healthy, baker rolls back to the previous one (exit 4)
#
# The local cloud is left running so you can look around (`baker local status`); the last lines
# say how to stop it. Re-running the demo is harmless: it carries on from what is deployed.
set -euo pipefail
cd "$(dirname "$0")/.."

ENV=${DEMO_ENV:-dev}
say() { printf '\n\033[1m== %s\033[0m\n' "$*" >&2; }
field() { python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

extra=()
if [ -n "$(git status --porcelain 2>/dev/null)" ]; then
  echo "note: the work tree has uncommitted changes; packaging them with --allow-dirty" >&2
  extra+=(--allow-dirty)
fi

say "1. baker local up"
baker local up
baker local status

say "2. baker --local release -e $ENV  (bake, then deploy and wait for a healthy fleet)"
first=$(baker --local --output json release -e "$ENV" "${extra[@]}")
echo "$first"
ami=$(echo "$first" | field ami_id)

say "3. bake again: the recipe is unchanged, so it is a cache hit (no Packer run)"
again=$(baker --local --output json bake -e "$ENV" "${extra[@]}")
echo "$again"
[ "$(echo "$again" | field cached)" = True ] || { echo "expected a cache hit" >&2; exit 1; }

say "4. a new AMI (bake --force), rolled out instance by instance"
new=$(baker --local --output json bake -e "$ENV" --force "${extra[@]}" | field ami_id)
baker --local deploy -e "$ENV" --ami "$new"

say "5. a bad AMI: its targets stay unhealthy, so the rollout fails and baker rolls back to $new"
bad=$(baker --local --output json bake -e "$ENV" --force "${extra[@]}" | field ami_id)
baker local health --ami "$bad" --state unhealthy
set +e
baker --local deploy -e "$ENV" --ami "$bad"
code=$?
set -e
echo "baker deploy exited $code (4: rolled back, the previous AMI is live again)" >&2
[ "$code" = 4 ] || exit 1

say "what is live now"
baker local status

cat >&2 <<EOF

Done: first AMI $ami, rolled forward to $new, $bad refused and rolled back.
The local cloud is still running. Try:
  baker --local config show -e $ENV
  baker local status
Stop it with:
  baker local down
EOF
