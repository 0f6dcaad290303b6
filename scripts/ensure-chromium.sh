#!/usr/bin/env bash
# Make sure headless Chromium and its WebDriver are installed (for the `browser` tests).
#
#   bash scripts/ensure-chromium.sh
#
# Debian's `chromium` and `chromium-driver` packages; when either binary is missing and we are
# root, both are installed with apt (the browser tests never download a browser). Otherwise one
# line on stderr and exit 2.
set -euo pipefail

log() { echo "ensure-chromium: $*" >&2; }

have() { command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; }

have && exit 0
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  log "installing chromium and chromium-driver with apt"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
fi
have || { log "chromium and chromedriver not found; install the chromium and chromium-driver packages"; exit 2; }
