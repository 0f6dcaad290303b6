"""A PostgreSQL server of the fleet's own, under the state directory (the multi-server topology).

`start_postgres(directory)` runs `initdb` into `<directory>/data` the first time (a random password
for the `fleet` role, kept in `<directory>/password`, mode 0600), then starts `postgres` on a free
loopback port with no Unix socket and creates the `prefect` database once. PostgreSQL refuses to
run as root, so a root caller runs it as the `postgres` system user (created if missing), as
`scripts/with-postgres.sh` does; every directory above the data directory must then let that user
pass. Debian's binaries under `/usr/lib/postgresql/*/bin` are used.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import socket
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

from fleet.core.errors import ServerError
from fleet.core.server.process import start_until_ready

__all__ = [
    "DATABASE",
    "USER",
    "Postgres",
    "database_url",
    "find_bindir",
    "postgres_ready",
    "start_postgres",
]

USER = "fleet"
DATABASE = "prefect"
SYSTEM_USER = "postgres"


@dataclass(frozen=True)
class Postgres:
    """A started PostgreSQL server: its postmaster's pid, port and the asyncpg URL of `prefect`."""

    pid: int
    port: int
    url: str
    log_path: Path


def find_bindir() -> Path:
    """The newest `/usr/lib/postgresql/*/bin` with `initdb` and `postgres`, else the one on PATH.

    Raises:
        ServerError: no PostgreSQL binaries (install Debian's `postgresql` package).
    """
    found = sorted(
        (d for d in Path("/usr/lib/postgresql").glob("*/bin") if (d / "postgres").exists()),
        key=lambda d: int(d.parent.name) if d.parent.name.isdigit() else 0,
    )
    if found:
        return found[-1]
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).resolve().parent
    raise ServerError("no PostgreSQL binaries (initdb, postgres): install the postgresql package")


def _run_as() -> str | None:
    """The user PostgreSQL runs as: None (ourselves) unless we are root, then `postgres`."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        shell = "/usr/sbin/nologin"
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", shell, SYSTEM_USER],
            check=True,
            capture_output=True,
        )
    return SYSTEM_USER


def _check_traversable(path: Path, user: str) -> None:
    """Raise unless `user` may pass through every directory above `path` (root's 0700 tmp dirs)."""
    entry = pwd.getpwnam(user)
    for parent in path.parents:
        mode = parent.stat()
        if mode.st_uid == entry.pw_uid or mode.st_mode & stat.S_IXOTH:
            continue
        if mode.st_gid == entry.pw_gid and mode.st_mode & stat.S_IXGRP:
            continue
        raise ServerError(
            f"PostgreSQL runs as {user!r}, which cannot enter {parent} (mode "
            f"{stat.S_IMODE(mode.st_mode):04o}): use a state directory it can reach"
        )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def postgres_ready(port: int, timeout: float = 2.0) -> bool:
    """Whether PostgreSQL accepts connections on 127.0.0.1:`port` (`pg_isready`)."""
    try:
        done = subprocess.run(
            [str(find_bindir() / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port)],
            timeout=timeout,
            check=False,
        )
    except (ServerError, OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def _initdb(bindir: Path, data: Path, pwfile: Path, user: str | None) -> None:
    data.parent.mkdir(parents=True, exist_ok=True)
    pwfile.write_text(secrets.token_hex(16) + "\n")
    pwfile.chmod(0o600)
    if user is not None:
        _check_traversable(data, user)
        shutil.chown(data.parent, user)
        shutil.chown(pwfile, user)
    done = subprocess.run(
        [
            str(bindir / "initdb"),
            "-D",
            str(data),
            "-U",
            USER,
            f"--pwfile={pwfile}",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "-E",
            "UTF8",
            "--no-instructions",
        ],
        user=user,
        cwd=data.parent,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        tail = " | ".join(done.stderr.strip().splitlines()[-3:])
        raise ServerError(f"initdb {data} failed: {tail}")


def start_postgres(directory: Path, *, timeout: float = 60.0) -> Postgres:
    """Initialise (first time) and start PostgreSQL under `directory`; create `prefect` once.

    The postmaster leads its own process group; SIGINT is PostgreSQL's fast shutdown.

    Raises:
        ServerError: no binaries, initdb failed, or it did not accept connections in `timeout`.
    """
    bindir = find_bindir()
    user = _run_as()
    data, pwfile, log_path = directory / "data", directory / "password", directory / "postgres.log"
    if not (data / "PG_VERSION").exists():
        _initdb(bindir, data, pwfile, user)
    password = pwfile.read_text().strip()
    port = _free_port()
    options = [
        "-c",
        "listen_addresses=127.0.0.1",
        "-p",
        str(port),
        "-c",
        "unix_socket_directories=",
        "-c",
        "max_connections=200",
    ]
    proc = start_until_ready(
        "postgres",
        [str(bindir / "postgres"), "-D", str(data), *options],
        log_path,
        lambda: postgres_ready(port),
        timeout=timeout,
        poll=0.2,
        user=user,
        cwd=directory,
    )
    _create_database(bindir, port, password)
    return Postgres(proc.pid, port, database_url(directory, port), log_path)


def database_url(directory: Path, port: int) -> str:
    """The asyncpg URL of the `prefect` database of the PostgreSQL under `directory` on `port`.

    Raises:
        ServerError: its password file is missing or unreadable.
    """
    try:
        password = (directory / "password").read_text().strip()
    except OSError as exc:
        raise ServerError(f"cannot read the PostgreSQL password: {exc}") from exc
    return f"postgresql+asyncpg://{USER}:{password}@127.0.0.1:{port}/{DATABASE}"


def _create_database(bindir: Path, port: int, password: str) -> None:
    env = {**os.environ, "PGPASSWORD": password}
    base = ["-h", "127.0.0.1", "-p", str(port), "-U", USER]
    listed = subprocess.run(
        [str(bindir / "psql"), *base, "-d", "postgres", "-tAc", "SELECT datname FROM pg_database"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if DATABASE in listed.stdout.split():
        return
    done = subprocess.run(
        [str(bindir / "createdb"), *base, DATABASE],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise ServerError(f"createdb {DATABASE} failed: {done.stderr.strip()}")
