#!/usr/bin/env bash
# Fake Raspberry Pis on this machine, for the rollout test: each one is a network namespace on a
# bridge, with its own root filesystem (overlayfs over a debootstrap Bookworm base) booted by
# systemd-nspawn, so systemd is PID 1, sshd runs, and the agent's unit really starts (with its
# hardening). The Pis have no route out (offline, like a lab network without internet).
#
#   fakepi.sh base                  build the cached Bookworm base (once, ~1 min, needs a mirror)
#   fakepi.sh wheelhouse OUT.tar.gz build the wheelhouse with the base's Python (the Pis' Python)
#   fakepi.sh up N                  boot N Pis: 10.77.0.11 ... (ssh as pi, key in $RUN/id_ed25519)
#   fakepi.sh exec I CMD...         run CMD inside Pi I (all its namespaces)
#   fakepi.sh down                  power off and remove every Pi, the bridge and the overlays
#
# Environment: FAKEPI_CACHE (base + pip cache, default /var/cache/plate-resort-fleet/fakepi),
# FAKEPI_RUN (overlays, keys, logs; default /var/tmp/plate-resort-fakepi), FAKEPI_MIRROR.
set -euo pipefail

CACHE="${FAKEPI_CACHE:-/var/cache/plate-resort-fleet/fakepi}"
RUN="${FAKEPI_RUN:-/var/tmp/plate-resort-fakepi}"
MIRROR="${FAKEPI_MIRROR:-http://deb.debian.org/debian}"
BASE="$CACHE/bookworm-base"
BRIDGE=br-fakepi
NET=10.77.0
# Bump when the package list or the base set-up changes (rebuilds the cached base).
BASE_VERSION=2
PACKAGES=haproxy,python3,python3-venv,python3-packaging,python3-apt,openssh-server,sudo,systemd,systemd-sysv,dbus,iproute2,udev

log() { echo "fakepi: $*" >&2; }

cmd_base() {
  if [ -f "$BASE/.fakepi-base-$BASE_VERSION" ]; then return 0; fi
  log "building the Bookworm base in $BASE (debootstrap minbase)"
  rm -rf "$BASE" "$BASE.tmp"
  mkdir -p "$CACHE"
  debootstrap --variant=minbase --include="$PACKAGES" bookworm "$BASE.tmp" "$MIRROR" \
    >"$CACHE/debootstrap.log" 2>&1 || { tail -20 "$CACHE/debootstrap.log" >&2; return 1; }
  local r="$BASE.tmp"
  chroot "$r" useradd --create-home --shell /bin/bash pi
  echo 'pi ALL=(ALL) NOPASSWD:ALL' >"$r/etc/sudoers.d/pi"
  chmod 0440 "$r/etc/sudoers.d/pi"
  install -d -m 0700 -o 1000 -g 1000 "$r/home/pi/.ssh"
  # Quiet, fast boots: nothing that needs the network or a real console.
  chroot "$r" systemctl mask apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer \
    console-getty.service systemd-networkd-wait-online.service >/dev/null 2>&1 || true
  rm -f "$r"/etc/ssh/ssh_host_*
  # Each Pi gets fresh host keys and a machine id at first boot.
  : >"$r/etc/machine-id"
  chroot "$r" python3 -m venv /opt/wheelhouse-builder
  touch "$r/.fakepi-base-$BASE_VERSION"
  mv "$r" "$BASE"
}

# Build the wheelhouse inside the base (the same Python as the Pis, so markers match). Cached by
# a hash of the package sources: an unchanged tree reuses the last archive.
cmd_wheelhouse() {
  local out="$1" repo key
  repo="$(cd "$(dirname "$0")/../.." && pwd)"
  cmd_base
  key="$(cd "$repo" && find pyproject.toml ansible/tools/build-wheelhouse.sh fleet device_agent \
    flows -type f ! -path '*/__pycache__/*' -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)"
  if [ -f "$CACHE/wheelhouse-$key.tar.gz" ]; then
    mkdir -p "$(dirname "$out")"
    cp "$CACHE/wheelhouse-$key.tar.gz" "$out"
    log "wheelhouse unchanged ($key), reused"
    return 0
  fi
  mkdir -p "$(dirname "$out")"
  local src="$BASE/mnt/src" dst="$BASE/mnt/out"
  mkdir -p "$src" "$dst"
  mount --bind "$repo" "$src"
  mount --bind "$(dirname "$out")" "$dst"
  mount -t proc proc "$BASE/proc"
  mount --bind /dev "$BASE/dev"
  cp -L /etc/resolv.conf "$BASE/etc/resolv.conf"
  # The controller's CA bundle (the base has no ca-certificates; a proxy may re-sign PyPI).
  local ca="${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}"
  local env=(PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root)
  if [ -f "$ca" ]; then
    cp -L "$ca" "$BASE/mnt/ca.crt"
    env+=(PIP_CERT=/mnt/ca.crt SSL_CERT_FILE=/mnt/ca.crt)
  fi
  local v
  for v in HTTP_PROXY HTTPS_PROXY NO_PROXY http_proxy https_proxy no_proxy PIP_INDEX_URL; do
    [ -z "${!v:-}" ] || env+=("$v=${!v}")
  done
  local rc=0
  chroot "$BASE" /usr/bin/env -i "${env[@]}" \
    bash /mnt/src/ansible/tools/build-wheelhouse.sh --python /opt/wheelhouse-builder/bin/python \
    "/mnt/out/$(basename "$out")" || rc=$?
  umount "$BASE/dev" "$BASE/proc" "$dst" "$src"
  if [ $rc -eq 0 ]; then
    rm -f "$CACHE"/wheelhouse-*.tar.gz
    cp "$out" "$CACHE/wheelhouse-$key.tar.gz"
  fi
  return $rc
}

pi_ip() { echo "$NET.$((10 + $1))"; }

cmd_up() {
  local n="$1" i
  cmd_base
  mkdir -p "$RUN"
  [ -f "$RUN/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C fakepi -f "$RUN/id_ed25519"
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link add "$BRIDGE" type bridge
    ip addr add "$NET.1/24" dev "$BRIDGE"
    ip link set "$BRIDGE" up
  fi
  for i in $(seq 1 "$n"); do
    local name="fakepi$i" dir="$RUN/pi$i" ip
    ip="$(pi_ip "$i")"
    mkdir -p "$dir/upper" "$dir/work" "$dir/root"
    mountpoint -q "$dir/root" ||
      mount -t overlay overlay -o "lowerdir=$BASE,upperdir=$dir/upper,workdir=$dir/work" "$dir/root"
    echo "$name" >"$dir/root/etc/hostname"
    printf '127.0.0.1 localhost\n127.0.1.1 %s\n%s.1 controller\n' "$name" "$NET" \
      >"$dir/root/etc/hosts"
    install -m 0600 -o 1000 -g 1000 "$RUN/id_ed25519.pub" "$dir/root/home/pi/.ssh/authorized_keys"
    [ -f "$dir/root/etc/ssh/ssh_host_ed25519_key" ] || chroot "$dir/root" ssh-keygen -A >/dev/null
    if ! ip netns list | grep -qw "$name"; then
      ip netns add "$name"
      ip link add "fp${i}h" type veth peer name eth0 netns "$name"
      ip link set "fp${i}h" master "$BRIDGE" up
      ip -n "$name" addr add "$ip/24" dev eth0
      ip -n "$name" link set eth0 up
      ip -n "$name" link set lo up
    fi
    if [ -f "$dir/nspawn.pid" ] && kill -0 "$(cat "$dir/nspawn.pid")" 2>/dev/null; then continue; fi
    setsid systemd-nspawn --quiet --boot --register=no --keep-unit --console=read-only \
      -M "$name" -D "$dir/root" --network-namespace-path="/run/netns/$name" \
      >"$dir/console.log" 2>&1 </dev/null &
    echo $! >"$dir/nspawn.pid"
  done
  for i in $(seq 1 "$n"); do
    local ip deadline=$((SECONDS + 60))
    ip="$(pi_ip "$i")"
    until ssh -q -i "$RUN/id_ed25519" -o BatchMode=yes -o StrictHostKeyChecking=no \
      -o UserKnownHostsFile=/dev/null -o ConnectTimeout=2 "pi@$ip" true 2>/dev/null; do
      if [ $SECONDS -gt $deadline ]; then
        log "pi$i ($ip) did not answer on ssh within 60 s"; tail -20 "$RUN/pi$i/console.log" >&2
        return 1
      fi
      sleep 0.5
    done
    log "pi$i up at $ip"
  done
}

# PID of systemd (PID 1) inside Pi I.
pi_init_pid() { pgrep -P "$(pgrep -P "$(cat "$RUN/pi$1/nspawn.pid")" | head -1)" | head -1; }

cmd_exec() {
  local i="$1"; shift
  local pid
  pid="$(pgrep -P "$(cat "$RUN/pi$i/nspawn.pid")" -x systemd || pi_init_pid "$i")"
  nsenter -t "$pid" -a "$@"
}

cmd_down() {
  local dir i
  for dir in "$RUN"/pi*; do
    [ -d "$dir" ] || continue
    i="${dir##*/pi}"
    if [ -f "$dir/nspawn.pid" ]; then
      local pid init deadline=$((SECONDS + 15))
      pid="$(cat "$dir/nspawn.pid")"
      # the Pi's systemd, looked up while nspawn lives: it has outlived a killed nspawn (seen
      # 2026-12-07: a fake Pi's agent still running after the suite), and SIGKILL to a PID
      # namespace's init ends every process in it
      init="$(pgrep -P "$pid" -x systemd || pi_init_pid "$i" 2>/dev/null || true)"
      kill -TERM "$pid" 2>/dev/null || true
      while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
      kill -KILL "$pid" 2>/dev/null || true
      if [ -n "$init" ]; then kill -KILL "$init" 2>/dev/null || true; fi
      rm -f "$dir/nspawn.pid"
    fi
    if mountpoint -q "$dir/root"; then umount "$dir/root" || umount -l "$dir/root"; fi
    ip netns del "fakepi$i" 2>/dev/null || true
    ip link del "fp${i}h" 2>/dev/null || true
    rm -rf "$dir"
  done
  ip link del "$BRIDGE" 2>/dev/null || true
}

case "${1:-}" in
  base) cmd_base ;;
  wheelhouse) cmd_wheelhouse "$2" ;;
  up) cmd_up "${2:-2}" ;;
  exec) shift; cmd_exec "$@" ;;
  down) cmd_down ;;
  *) echo "usage: $0 base|wheelhouse OUT|up N|exec I CMD...|down" >&2; exit 2 ;;
esac
