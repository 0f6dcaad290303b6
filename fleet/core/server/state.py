"""Where the local server's files live (the project state directory) and its record, server.json."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "ENV_STATE_DIR",
    "STATE_FILE",
    "ServerInfo",
    "locked",
    "mask_url",
    "same_process_alive",
    "server_dir",
    "server_home",
    "state_dir",
    "write_json",
]

ENV_STATE_DIR = "FLEET_STATE_DIR"
DEFAULT_STATE_DIR = ".fleet-state"
STATE_FILE = "server.json"


def state_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The project state directory: `explicit`, else `$FLEET_STATE_DIR`, else `./.fleet-state`."""
    if explicit:
        return Path(explicit).expanduser().resolve()
    env = os.environ.get(ENV_STATE_DIR)
    if env:
        return Path(env).expanduser().resolve()
    return (Path.cwd() / DEFAULT_STATE_DIR).resolve()


def server_dir(state: str | os.PathLike[str] | None = None) -> Path:
    """Directory of the local server (home, database, log, `server.json`): `<state>/server`."""
    return state_dir(state) / "server"


def server_home(state: str | os.PathLike[str] | None = None) -> Path:
    """The local server's `PREFECT_HOME` (its SQLite database, lease storage)."""
    return server_dir(state) / "home"


def mask_url(url: str) -> str:
    """The URL with its password masked (`scheme://user:***@host...`)."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in creds else url


def same_process_alive(pid: int, create_time: float) -> bool:
    """True when `pid` runs, is not a zombie, and started at `create_time` (not a reused pid)."""
    import psutil

    try:
        proc = psutil.Process(pid)
        if abs(proc.create_time() - create_time) > 1.0:
            return False
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def write_json(path: Path, data: Any) -> None:
    """Write `data` as JSON to `path` atomically (temp file + rename)."""
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


@contextlib.contextmanager
def locked(directory: Path) -> Iterator[None]:
    """Hold an exclusive lock on `directory/.lock` (one `up`/`down` at a time)."""
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / ".lock").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@dataclass(frozen=True)
class ServerInfo:
    """What `server.json` records about a started local server.

    Attributes:
        pid: process id of `prefect server start` (leader of its own process group).
        create_time: the process's start time (psutil), to recognise a reused pid.
        api_url: `http://127.0.0.1:PORT/api`.
        ui_url: the UI's URL, or None when started with the UI off.
        port: the loopback TCP port.
        home: the server's `PREFECT_HOME` (SQLite database, lease storage).
        log_path: where the server's stdout and stderr go.
        database: "sqlite" or the database URL with its password masked.
        auth_file: the file holding the server's auth string, if it requires one.
        started_at: Unix time when `up` started it.
    """

    pid: int
    create_time: float
    api_url: str
    ui_url: str | None
    port: int
    home: str
    log_path: str
    database: str
    auth_file: str | None
    started_at: float

    @classmethod
    def load(cls, path: Path) -> ServerInfo | None:
        """Read a `server.json`; None when missing or unreadable."""
        try:
            data = json.loads(path.read_text())
            return cls(**{k: data.get(k) for k in cls.__dataclass_fields__})
        except (OSError, ValueError, TypeError, AttributeError):
            return None

    def save(self, path: Path) -> None:
        """Write atomically (temp file + rename)."""
        write_json(path, asdict(self))

    def process_alive(self) -> bool:
        """True when the recorded process still runs and is the same process (not a reused pid)."""
        if not isinstance(self.pid, int) or not isinstance(self.create_time, int | float):
            return False
        return same_process_alive(self.pid, float(self.create_time))
