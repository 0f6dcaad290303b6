"""The emulator on a pseudo-terminal: one process, one poll loop, a symlink and a control socket.

The real SDK opens the symlink (e.g. ``run/ttyDXL-A -> /dev/pts/7``) like a USB adapter. The server
holds the slave fd for its lifetime (else the master reads EIO while the SDK reopens), reads the
host's baud from the slave's termios (a mismatch gets no reply), counts opens of the slave by other
processes with inotify ``IN_OPEN``, and simulates USB loss by closing the pty (the device node
vanishes). Control: JSON lines on the unix socket ``PATH + ".ctl"``. Recipe: reference 5.2.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import heapq
import json
import logging
import math
import os
import select
import signal
import socket
import struct
import termios
import time
import tty
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from device_agent.emulator.faults import FAULT_KINDS
from device_agent.emulator.model import XM430Model
from resort_common.tunables import SDK_BAUDRATES

__all__ = ["PtyServer", "control_path", "control_request"]

_log = logging.getLogger(__name__)

_IN_OPEN = 0x00000020
# Closes are watched too: inotify merges identical *consecutive* unread events, so two opens with
# no close event between them would count once.
_IN_CLOSE = 0x00000008 | 0x00000010
_EVENT = struct.Struct("iIII")
_SLEEP_BELOW = 0.002  # s: shorter reply delays are slept, longer ones scheduled in the loop

# termios speed constant -> bits per second
_SPEEDS = {
    getattr(termios, f"B{rate}"): rate for rate in SDK_BAUDRATES if hasattr(termios, f"B{rate}")
}


def control_path(link: str | os.PathLike[str]) -> Path:
    """The control socket of the emulator serving `link`."""
    return Path(f"{os.fspath(link)}.ctl")


def control_request(
    link: str | os.PathLike[str], request: dict[str, Any], timeout: float = 5.0
) -> dict[str, Any]:
    """Send one JSON request to the emulator at `link` and return its JSON answer.

    Raises:
        FileNotFoundError / ConnectionRefusedError: no emulator is serving `link`.
        TimeoutError: no answer within `timeout`.
    """
    path = control_path(link)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock, _unix_address(path) as addr:
        sock.settimeout(timeout)
        sock.connect(addr)
        sock.sendall(json.dumps(request).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"emulator at {link} closed the control connection")
            buf += chunk
    answer: dict[str, Any] = json.loads(buf)
    return answer


@contextlib.contextmanager
def _unix_address(path: Path) -> Iterator[str]:
    """`path` as a unix-socket address; long paths (> 107 bytes) go through /proc/self/fd."""
    if len(os.fsencode(path)) < 100:
        yield os.fspath(path)
        return
    dir_fd = os.open(path.parent, os.O_PATH | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{dir_fd}/{path.name}"
    finally:
        os.close(dir_fd)


class _Inotify:
    """Minimal ctypes inotify: count IN_OPEN on one path at a time."""

    def __init__(self) -> None:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        self._libc = libc
        self.fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"inotify_init1: {os.strerror(err)}")
        self.wd = -1

    def watch(self, path: str) -> None:
        self.unwatch()
        wd = self._libc.inotify_add_watch(self.fd, path.encode(), _IN_OPEN | _IN_CLOSE)
        if wd < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"inotify_add_watch({path}): {os.strerror(err)}")
        self.wd = wd

    def unwatch(self) -> None:
        if self.wd >= 0:
            self._libc.inotify_rm_watch(self.fd, self.wd)  # fails harmlessly if already gone
            self.wd = -1

    def read_opens(self) -> int:
        opens = 0
        while True:
            try:
                data = os.read(self.fd, 4096)
            except BlockingIOError:
                return opens
            i = 0
            while i + _EVENT.size <= len(data):
                wd, mask, _cookie, length = _EVENT.unpack_from(data, i)
                if mask & _IN_OPEN and wd == self.wd:
                    opens += 1
                i += _EVENT.size + length

    def close(self) -> None:
        os.close(self.fd)


class PtyServer:
    """Serve an `XM430Model` on a pty published at `link`.

    Args:
        link: symlink path to publish (a stale symlink is replaced; anything else is refused).
        model: the servo.
        owned_by_agent: started by a device agent, which stops it with itself (reported in
            `stats()`); an emulator started on its own is never stopped by an agent.
    """

    def __init__(
        self, link: str | os.PathLike[str], model: XM430Model, *, owned_by_agent: bool = False
    ) -> None:
        self.link = Path(link)
        self.owned_by_agent = owned_by_agent
        self.ctl_path = control_path(link)
        self.model = model
        self.master = -1
        self.slave = -1
        self.pts: str | None = None
        self.opens = 0
        self.host_baud: int | None = None
        self.baud_mismatches = 0
        self._pending: list[tuple[float, int, bytes]] = []
        self._seq = 0
        self._clients: dict[int, tuple[socket.socket, bytearray]] = {}
        self._stop = False
        self._poll = select.poll()
        self._inotify = _Inotify()
        self._listener: socket.socket | None = None
        self._wake_r, self._wake_w = socket.socketpair()
        for s in (self._wake_r, self._wake_w):
            s.setblocking(False)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Create the pty, publish the link and open the control socket.

        Raises:
            FileExistsError: `link` exists and is not a symlink.
        """
        if self.link.exists() and not self.link.is_symlink():
            raise FileExistsError(f"--link {self.link} exists and is not a symlink; not replacing")
        if self.ctl_path.exists():
            try:
                other = control_request(self.link, {"stats": True}, timeout=1.0)
            except (OSError, ValueError):
                other = None  # a stale socket: replaced below
            if other is not None:
                raise FileExistsError(
                    f"--link {self.link}: another emulator (pid {other.get('pid')}) serves it"
                )
        self._plug()
        with contextlib.suppress(FileNotFoundError):
            self.ctl_path.unlink()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with _unix_address(self.ctl_path) as addr:
            listener.bind(addr)
        listener.listen(8)
        listener.setblocking(False)
        self._listener = listener
        self._poll.register(listener.fileno(), select.POLLIN)
        self._poll.register(self._inotify.fd, select.POLLIN)
        self._poll.register(self._wake_r.fileno(), select.POLLIN)

    def install_signal_handlers(self) -> None:
        """Stop cleanly on SIGTERM/SIGINT (the loop wakes through a socketpair)."""
        signal.set_wakeup_fd(self._wake_w.fileno(), warn_on_full_buffer=False)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, _frame: object) -> None:
        self._stop = True

    def request_stop(self) -> None:
        """Make `serve_forever` return (thread- and signal-safe)."""
        self._stop = True
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")

    def serve_forever(self, ready: Callable[[PtyServer], None] | None = None) -> None:
        """Run the poll loop until `request_stop` or a signal; clean up on exit."""
        if ready is not None:
            ready(self)
        try:
            while not self._stop:
                self._serve_once()
        finally:
            self.close()

    def close(self) -> None:
        """Remove the link and the control socket; close every fd."""
        self._unplug()
        if self._listener is not None:
            self._listener.close()
            self._listener = None
            with contextlib.suppress(FileNotFoundError):
                self.ctl_path.unlink()
        for sock, _ in self._clients.values():
            sock.close()
        self._clients.clear()
        self._inotify.close()
        self._wake_r.close()
        self._wake_w.close()
        self.model.close()

    # ------------------------------------------------------------------ pty (USB adapter)

    @property
    def plugged(self) -> bool:
        """True while the pty exists and the link points at it."""
        return self.master >= 0

    def _plug(self) -> None:
        if self.plugged:
            return
        master, slave = os.openpty()
        tty.setraw(slave)
        os.set_blocking(master, False)
        self.master, self.slave = master, slave
        self.pts = os.ttyname(slave)
        self._inotify.watch(self.pts)
        tmp = self.link.with_name(f".{self.link.name}.{os.getpid()}.tmp")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        tmp.symlink_to(self.pts)
        os.replace(tmp, self.link)
        self._poll.register(master, select.POLLIN)
        if not self.model.usb_plugged:
            self.model.inject("replug")
        _log.info("plugged: %s -> %s", self.link, self.pts)

    def _unplug(self) -> None:
        if not self.plugged:
            return
        self.opens += self._inotify.read_opens()
        self._inotify.unwatch()
        with contextlib.suppress(FileNotFoundError):
            if self.link.is_symlink() and os.readlink(self.link) == self.pts:
                self.link.unlink()
        self._poll.unregister(self.master)
        os.close(self.master)
        os.close(self.slave)
        self.master = self.slave = -1
        self._pending.clear()
        self.model.inject("unplug")
        _log.info("unplugged: %s (was %s)", self.link, self.pts)

    # ------------------------------------------------------------------ loop

    def _serve_once(self) -> None:
        timeout: float | None = None
        if self._pending:
            wait = self._pending[0][0] - time.monotonic()
            timeout = max(0, math.ceil(wait * 1000))
        for fd, events in self._poll.poll(timeout):
            if fd == self.master:
                self._on_wire(events)
            elif self._listener is not None and fd == self._listener.fileno():
                self._accept()
            elif fd == self._inotify.fd:
                self.opens += self._inotify.read_opens()
            elif fd == self._wake_r.fileno():
                with contextlib.suppress(BlockingIOError):
                    self._wake_r.recv(4096)
            elif fd in self._clients:
                self._on_client(fd)
        self._flush_due()

    def _on_wire(self, events: int) -> None:
        try:
            data = os.read(self.master, 4096)
        except BlockingIOError:
            return
        except OSError as exc:
            if exc.errno != errno.EIO:
                raise
            return  # nobody has the slave open right now (cannot happen while we hold it)
        if not data:
            return
        host = _SPEEDS.get(termios.tcgetattr(self.slave)[4])
        self.host_baud = host
        if host != self.model.baudrate:
            self.baud_mismatches += 1  # the servo sees garbage at its own baud: no reply
            return
        now = time.monotonic()
        for reply in self.model.feed(data):
            if reply.delay < _SLEEP_BELOW:
                # the return delay (0.5 ms) is below poll()'s 1 ms resolution: wait it out here
                time.sleep(max(0.0, now + reply.delay - time.monotonic()))
                self._write(reply.data)
                continue
            self._seq += 1
            heapq.heappush(self._pending, (now + reply.delay, self._seq, reply.data))
        self._flush_due()

    def _write(self, data: bytes) -> None:
        if self.plugged:
            with contextlib.suppress(BlockingIOError):
                os.write(self.master, data)

    def _flush_due(self) -> None:
        now = time.monotonic()
        while self._pending and self._pending[0][0] <= now + 0.0002:
            _, _, data = heapq.heappop(self._pending)
            self._write(data)

    # ------------------------------------------------------------------ control socket

    def _accept(self) -> None:
        assert self._listener is not None
        try:
            sock, _ = self._listener.accept()
        except BlockingIOError:
            return
        sock.setblocking(False)
        self._clients[sock.fileno()] = (sock, bytearray())
        self._poll.register(sock.fileno(), select.POLLIN)

    def _on_client(self, fd: int) -> None:
        sock, buf = self._clients[fd]
        try:
            chunk = sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            self._drop_client(fd)
            return
        buf.extend(chunk)
        while b"\n" in buf:
            line, _, rest = bytes(buf).partition(b"\n")
            buf[:] = rest
            answer = self._answer(line)
            try:
                sock.setblocking(True)
                sock.sendall(json.dumps(answer).encode() + b"\n")
                sock.setblocking(False)
            except OSError:
                self._drop_client(fd)
                return

    def _drop_client(self, fd: int) -> None:
        sock, _ = self._clients.pop(fd)
        with contextlib.suppress(KeyError, ValueError):
            self._poll.unregister(fd)
        sock.close()

    def _answer(self, line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
            if not isinstance(request, dict):
                raise ValueError("request must be a JSON object")
            if "fault" in request:
                self.inject(str(request["fault"]))
                return {"ok": True}
            if request.get("stats"):
                return {"ok": True, **self.stats()}
            raise ValueError('request must have "fault": KIND or "stats": true')
        except ValueError as exc:
            return {"ok": False, "error": str(exc)}

    # ------------------------------------------------------------------ faults and stats

    def inject(self, kind: str) -> None:
        """Inject `kind` (one of `FAULT_KINDS`); unplug/replug also remove/restore the pty."""
        if kind == "unplug":
            self._unplug()
        elif kind == "replug":
            self._plug()
        elif kind in FAULT_KINDS:
            self.model.inject(kind)
        else:
            raise ValueError(f"fault kind {kind!r} is not one of {', '.join(FAULT_KINDS)}")

    def stats(self) -> dict[str, Any]:
        """Model stats plus the wire's: opens, pts, link, plugged, host baud."""
        if self.plugged:
            self.opens += self._inotify.read_opens()
        out = self.model.stats()
        out.update(
            opens=self.opens,
            pts=self.pts if self.plugged else None,
            link=os.fspath(self.link),
            plugged=self.plugged,
            host_baud=self.host_baud,
            baud_mismatches=self.baud_mismatches,
            pid=os.getpid(),
            owned_by_agent=self.owned_by_agent,
        )
        return out
