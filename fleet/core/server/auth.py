"""The basic-auth string of a Prefect server: read from a private file, or found for a client."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from fleet.core.errors import ServerError
from fleet.core.server.state import ServerInfo

__all__ = ["ENV_AUTH_FILE", "client_auth_string", "read_auth_file"]

ENV_AUTH_FILE = "FLEET_AUTH_FILE"


def read_auth_file(path: str | os.PathLike[str]) -> str:
    """Read a Prefect auth string (`user:password`) from a file only its owner may read.

    Raises:
        ServerError: the file is missing, empty, or readable by group or others.
    """
    p = Path(path).expanduser()
    try:
        mode = p.stat().st_mode
        text = p.read_text().strip()
    except OSError as exc:
        raise ServerError(f"auth file {p}: cannot read it ({exc.strerror})") from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ServerError(f"auth file {p}: mode {stat.S_IMODE(mode):04o}, must be 0600 (chmod 600)")
    if not text:
        raise ServerError(f"auth file {p}: empty; it must hold the auth string (user:password)")
    return text


def client_auth_string(recorded: ServerInfo | None) -> str | None:
    """The auth string a client of `recorded` (None: another server) sends, if any."""
    if os.environ.get("PREFECT_API_AUTH_STRING"):
        return os.environ["PREFECT_API_AUTH_STRING"]
    if os.environ.get(ENV_AUTH_FILE):
        return read_auth_file(os.environ[ENV_AUTH_FILE])
    if recorded is not None and recorded.auth_file:
        return read_auth_file(recorded.auth_file)
    return None
