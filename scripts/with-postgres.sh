#!/usr/bin/env bash
# Run CMD... against a throw-away PostgreSQL server, then stop and remove it.
#
#   bash scripts/with-postgres.sh .venv/bin/python -m pytest -m orchestration
#
# initdb into a temp directory, start PostgreSQL on a free loopback port (as the `postgres` user
# when run as root: PostgreSQL refuses to run as root), create a database and export
#   FLEET_TEST_DATABASE_URL=postgresql+asyncpg://fleet:PASSWORD@127.0.0.1:PORT/prefect
# which the `prefect_server` test fixture (and `fleet server up --database-url`) use. Debian's
# binaries under /usr/lib/postgresql/*/bin are used; when none is found and we are root, the
# `postgresql` package is installed with apt. Exits with CMD's status.
set -euo pipefail

if [ $# -eq 0 ]; then
  echo "usage: $0 CMD [ARGS...]" >&2
  exit 2
fi

log() { echo "with-postgres: $*" >&2; }

find_bindir() {
  local d best=""
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V); do
    [ -x "$d/pg_ctl" ] && [ -x "$d/initdb" ] && best="$d"
  done
  if [ -z "$best" ] && command -v pg_ctl >/dev/null 2>&1; then
    best="$(dirname "$(readlink -f "$(command -v pg_ctl)")")"
  fi
  echo "$best"
}

BINDIR="$(find_bindir)"
if [ -z "$BINDIR" ]; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing postgresql with apt"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends postgresql >/dev/null
    BINDIR="$(find_bindir)"
  fi
  if [ -z "$BINDIR" ]; then
    log "no PostgreSQL binaries (pg_ctl, initdb) found; install the postgresql package"
    exit 2
  fi
fi

# PostgreSQL refuses to run as root: use the postgres system user (created if missing).
RUN_AS=()
OWNER="$(id -un)"
if [ "$(id -u)" -eq 0 ]; then
  OWNER=postgres
  if ! id "$OWNER" >/dev/null 2>&1; then
    useradd --system --no-create-home --shell /usr/sbin/nologin "$OWNER"
  fi
  RUN_AS=(runuser -u "$OWNER" --)
fi

PY="$(command -v python3 || command -v python)"
PORT="$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
PASSWORD="$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/fleet-pg.XXXXXX")"
chmod 700 "$WORK"
printf '%s\n' "$PASSWORD" >"$WORK/pwfile"
[ "$OWNER" = "$(id -un)" ] || chown -R "$OWNER" "$WORK"

pg() { (cd "$WORK" && "${RUN_AS[@]}" "$@"); }

cleanup() {
  local rc=$?
  if [ -f "$WORK/data/postmaster.pid" ]; then
    pg "$BINDIR/pg_ctl" -D "$WORK/data" -m fast -w -t 30 stop >/dev/null 2>&1 || true
  fi
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

pg "$BINDIR/initdb" -D "$WORK/data" -U fleet --pwfile="$WORK/pwfile" \
  --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --no-instructions >"$WORK/initdb.log" 2>&1 \
  || { log "initdb failed:"; cat "$WORK/initdb.log" >&2; exit 1; }
# A test database: durability off, loopback only, socket in the work dir.
pg "$BINDIR/pg_ctl" -D "$WORK/data" -l "$WORK/postgres.log" -w -t 60 \
  -o "-c listen_addresses=127.0.0.1 -p $PORT -k $WORK -c fsync=off -c synchronous_commit=off \
-c full_page_writes=off -c max_connections=200" start >/dev/null \
  || { log "postgres did not start:"; tail -20 "$WORK/postgres.log" >&2; exit 1; }
PGPASSWORD="$PASSWORD" "$BINDIR/createdb" -h 127.0.0.1 -p "$PORT" -U fleet prefect

export FLEET_TEST_DATABASE_URL="postgresql+asyncpg://fleet:${PASSWORD}@127.0.0.1:${PORT}/prefect"
log "PostgreSQL $("$BINDIR/postgres" --version | awk '{print $3}') on 127.0.0.1:$PORT (database prefect)"

rc=0
"$@" || rc=$?
exit "$rc"
