#!/usr/bin/env bash
# `make test-ansible`: ansible-lint (production profile), the inventory plugin on the examples and
# on a broken file, then a real rollout to two fake Pis (systemd-nspawn containers in network
# namespaces, see fakepi.sh) against a real Prefect server with emulated motors, and the Prefect
# server's control-host role on a third fake host (PostgreSQL and Redis from the controller).
# Needs root and a Debian mirror the first time (the Bookworm base is cached afterwards).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cd "$repo"

need_apt=()
command -v systemd-nspawn >/dev/null || need_apt+=(systemd-container)
command -v debootstrap >/dev/null || need_apt+=(debootstrap)
command -v ssh >/dev/null || need_apt+=(openssh-client)
command -v ip >/dev/null || need_apt+=(iproute2)
command -v systemd-analyze >/dev/null || need_apt+=(systemd)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "test-ansible: installing ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

# Leftovers of an interrupted run (fake Pis still booted) would hold the addresses.
bash "$here/fakepi.sh" down

start=$SECONDS
status=0
"$repo/.venv/bin/python" -m pytest -p no:cacheprovider -m ansible --durations=8 \
  "$here" "$@" || status=$?
echo "test-ansible: $((SECONDS - start)) s"
exit $status
