#!/usr/bin/env bash
# Build the offline wheelhouse the Pis and the control hosts install from: this package (pinned
# version, with its `ha` extra for the control hosts' prefect-redis) and every dependency, as wheels
# for the Pis' Python, packed into one .tar.gz (one copy per host is fast).
#
#   ansible/tools/build-wheelhouse.sh [--python PY] [OUT.tar.gz]
#
# PY must match the Pis (same Python minor, same architecture; Raspberry Pi OS Bookworm: 3.11,
# aarch64): run this on one Pi, or in an arm64 Bookworm chroot, and copy the archive back. pip's
# --platform/--python-version do not evaluate environment markers for the target, so a wheelhouse
# built with another interpreter may miss a dependency.
# Default OUT: ansible/.work/wheelhouse/plate-resort-fleet-<version>.tar.gz
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
py=python3
if [ "${1:-}" = "--python" ]; then py="$2"; shift 2; fi
version="$(sed -n 's/^version = "\(.*\)"/\1/p' "$repo/pyproject.toml" | head -1)"
out="${1:-$repo/ansible/.work/wheelhouse/plate-resort-fleet-$version.tar.gz}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$(dirname "$out")"
# Build from a clean copy of the source tree (no build/ or egg-info left in the checkout).
mkdir -p "$work/src"
tar -C "$repo" --exclude=.git --exclude=.venv --exclude=./ansible --exclude=./bench \
  --exclude=./tests --exclude=.fleet-state --exclude=build --exclude='*.egg-info' \
  --exclude=__pycache__ --exclude='.*_cache' -cf - . | tar -C "$work/src" -xf -
# With the `ha` extra: the control hosts (role fleet_server) install prefect-redis from it too.
"$py" -m pip wheel --quiet --disable-pip-version-check --wheel-dir "$work/wheels" "$work/src[ha]"
test -f "$work/wheels/plate_resort_fleet-$version-py3-none-any.whl"
tar -C "$work/wheels" -czf "$out.tmp" .
mv "$out.tmp" "$out"
echo "$out ($(ls "$work/wheels" | wc -l) wheels)"
