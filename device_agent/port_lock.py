"""One process per serial port: an exclusive `flock` on the open tty, and who holds it.

Two processes talking on one Dynamixel bus interleave their packets, and a `device-agent ctl`
started next to a running agent could move a carousel the agent believes is still. The SDK opens
the port without a lock, so the transport locks the tty itself right after
opening it: `lock_port(fd, port)` takes ``flock(LOCK_EX | LOCK_NB)`` on the file description, the
same lock pyserial's ``exclusive=True`` takes, so any well-behaved serial tool sees it too. The
lock goes away with the file descriptor (port closed, process killed), so a crashed holder never
leaves it behind.

When the lock is taken, `/proc/locks` (readable by every user) names the holder's pid for the tty's
inode, and `/proc/PID/cmdline` its command line; the error carries both.
"""

from __future__ import annotations

import contextlib
import fcntl
import os

from device_agent.errors import PortBusyError

__all__ = ["describe_holder", "lock_port"]

_PROC_LOCKS = "/proc/locks"


def _holder_pid(fd: int) -> int | None:
    """The pid holding a flock on the inode behind `fd`, from /proc/locks (None if unknown)."""
    st = os.fstat(fd)
    wanted = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    try:
        with open(_PROC_LOCKS, encoding="ascii", errors="replace") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        # "1: FLOCK  ADVISORY  WRITE 4242 00:1a:4 0 EOF" (blocked waiters carry "->" first)
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == wanted:
            with contextlib.suppress(ValueError):
                return int(fields[4])
    return None


def describe_holder(pid: int) -> str:
    """`pid N (command line)`, or `pid N` when its command line cannot be read."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            argv = [a.decode(errors="replace") for a in handle.read().split(b"\0") if a]
    except OSError:
        return f"pid {pid}"
    if not argv:
        return f"pid {pid}"
    command = " ".join(" ".join(argv).split())  # one line, whatever the arguments hold
    return f"pid {pid} ({command[:200]})"


def lock_port(fd: int, port: str) -> None:
    """Take the exclusive lock of the open serial port `fd` (path `port`) for this process.

    Raises:
        PortBusyError: another process holds it; the message names its pid and command line.
    """
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pid = _holder_pid(fd)
        holder = describe_holder(pid) if pid is not None else None
        raise PortBusyError(
            f"serial port {port} is held by {holder or 'another process'}; stop it first "
            "(one process per port: a running agent, or `device-agent ctl`)",
            holder=holder,
        ) from None
