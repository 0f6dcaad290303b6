"""Helpers of the control-host rollout test: PostgreSQL and Redis on the fake hosts' bridge.

The fleet's own `start_postgres`/`start_redis` listen on 127.0.0.1 only; `TcpForward` relays a
port on the bridge address to them, so the fake control host reaches them as it would reach the
lab's database and Redis hosts.
"""

from __future__ import annotations

import contextlib
import socket
import threading

__all__ = ["TcpForward"]


class TcpForward:
    """Accept on (`host`, a free port) and relay every connection to 127.0.0.1:`target`."""

    def __init__(self, host: str, target: int) -> None:
        self.target = target
        self._server = socket.create_server((host, 0))
        self.port = int(self._server.getsockname()[1])
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, name=f"forward-{self.port}", daemon=True).start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target), timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._sockets += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pipe, args=(src, dst), daemon=True).start()

    def close(self) -> None:
        """Stop accepting and cut every relayed connection."""
        self._closed.set()
        self._server.close()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.close()


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)
