"""Who is acting: `user@host`, written into e-stop latches and the plate registry's history."""

from __future__ import annotations

import getpass
import socket

__all__ = ["who_am_i"]


def who_am_i() -> str:
    """`user@host` of this process (the host alone where no user name is known)."""
    try:
        return f"{getpass.getuser()}@{socket.gethostname()}"
    except Exception:  # no user name in some containers
        return socket.gethostname()
