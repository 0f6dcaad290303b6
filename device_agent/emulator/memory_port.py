"""`MemoryPort`: an in-memory stand-in for `dynamixel_sdk.PortHandler` wired to an `XM430Model`.

It has every attribute and method the SDK's packet handlers and group read/write classes use, so
tests run the REAL `PacketHandler` over it. Status packets become readable after their delay
(return delay, or the ``late`` fault), so SDK timeouts behave as on a serial line.
"""

from __future__ import annotations

import errno
import termios
import threading
import time
from collections import deque

from device_agent.emulator.model import XM430Model
from resort_common.tunables import SDK_BAUDRATES

__all__ = ["LATENCY_TIMER", "MemoryPort"]

LATENCY_TIMER = 16  # ms, as the SDK's port_handler module
DEFAULT_BAUDRATE = 1000000
_QUEUE_FROM = 0.005  # s: shorter reply delays are delivered immediately


class MemoryPort:
    """Duck-typed `PortHandler` whose wire is an `XM430Model` in this process.

    Args:
        model: the servo on the other end.
        port_name: what `getPortName()` reports.

    Attributes:
        opens: how many times the port was (re)opened (the SDK opens twice per connect).

    USB loss is shared through the model (``model.inject("unplug")`` or `unplug()`): every port on
    that model then fails like a vanished adapter, and after ``replug`` only a freshly opened port
    (new `MemoryPort` or `setupPort`) works again, as with pyserial.
    """

    def __init__(self, model: XM430Model, port_name: str = "memory://xm430") -> None:
        self.model = model
        self.is_open = False
        self.baudrate = DEFAULT_BAUDRATE
        self.packet_start_time = 0.0
        self.packet_timeout = 0.0
        self.tx_time_per_byte = 0.0
        self.is_using = False
        self.port_name = port_name
        self.ser: object | None = None
        self.opens = 0
        self._generation = model.usb_generation
        self._rx = bytearray()
        self._pending: deque[tuple[float, bytes]] = deque()
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ open / close

    def openPort(self) -> bool:
        """Open at the current baud (1 Mbps until `setBaudRate`)."""
        return self.setBaudRate(self.baudrate)

    def closePort(self) -> None:
        """Close the port (pending input is lost)."""
        self.is_open = False
        with self._lock:
            self._rx.clear()
            self._pending.clear()

    def clearPort(self) -> None:
        """Drop input that has arrived (SDK >= 4.0.5 `reset_input_buffer`)."""
        self._check_plugged()
        with self._lock:
            self._arrive(time.monotonic())
            self._rx.clear()

    def setPortName(self, port_name: str) -> None:
        """Set the name reported by `getPortName`."""
        self.port_name = port_name

    def getPortName(self) -> str:
        """The port's name."""
        return self.port_name

    def setBaudRate(self, baudrate: int) -> bool:
        """Reopen at `baudrate`; False for a rate the SDK refuses."""
        baud = self.getCFlagBaud(baudrate)
        if baud <= 0:
            return False
        self.baudrate = baudrate
        return self.setupPort(baud)

    def getBaudRate(self) -> int:
        """The host-side baud rate."""
        return self.baudrate

    def setupPort(self, cflag_baud: int) -> bool:
        """(Re)open the port like pyserial would."""
        if self.is_open:
            self.closePort()
        if not self.model.usb_plugged:
            raise FileNotFoundError(
                errno.ENOENT,
                f"could not open port {self.port_name}: [Errno 2] No such file or directory",
            )
        self.opens += 1
        self._generation = self.model.usb_generation
        self.is_open = True
        self.ser = self
        with self._lock:
            self._rx.clear()
        self.tx_time_per_byte = (1000.0 / self.baudrate) * 10.0
        return True

    def getCFlagBaud(self, baudrate: int) -> int:
        """`baudrate` if the SDK accepts it, else -1."""
        return baudrate if baudrate in SDK_BAUDRATES else -1

    # ------------------------------------------------------------------ I/O

    def getBytesAvailable(self) -> int:
        """Bytes ready to read now."""
        self._check_plugged()
        with self._lock:
            self._arrive(time.monotonic())
            return len(self._rx)

    def readPort(self, length: int) -> bytes:
        """Up to `length` bytes that have arrived (non-blocking, like ``timeout=0``)."""
        self._check_plugged()
        with self._lock:
            self._arrive(time.monotonic())
            data = bytes(self._rx[:length])
            del self._rx[:length]
            return data

    def writePort(self, packet: bytes | bytearray | list[int]) -> int:
        """Send `packet` to the model; its replies are queued with their delays."""
        self._check_plugged()
        data = bytes(packet)
        replies = self.model.feed(data) if self.baudrate == self.model.baudrate else []
        now = time.monotonic()
        with self._lock:
            for reply in replies:
                # Sub-millisecond return delays are delivered at once: the SDK reads once, then
                # checks its timeout, so a thread descheduled in between would miss a reply that
                # was "on the wire" all along. Only real delays (``late``) are queued.
                due = now + reply.delay if reply.delay >= _QUEUE_FROM else now
                self._pending.append((due, reply.data))
        return len(data)

    def _arrive(self, now: float) -> None:
        while self._pending and self._pending[0][0] <= now:
            self._rx.extend(self._pending.popleft()[1])

    # ------------------------------------------------------------------ timing (as the SDK)

    def setPacketTimeout(self, packet_length: int) -> None:
        """Timeout for a status of `packet_length` bytes, the SDK's formula."""
        self.packet_start_time = self.getCurrentTime()
        self.packet_timeout = (self.tx_time_per_byte * packet_length) + (LATENCY_TIMER * 2.0) + 2.0

    def setPacketTimeoutMillis(self, msec: float) -> None:
        """Timeout of `msec` milliseconds from now."""
        self.packet_start_time = self.getCurrentTime()
        self.packet_timeout = msec

    def isPacketTimeout(self) -> bool:
        """True once the packet timeout has passed."""
        if self.getTimeSinceStart() > self.packet_timeout:
            self.packet_timeout = 0
            return True
        return False

    def getCurrentTime(self) -> float:
        """Milliseconds (wall clock, as the SDK)."""
        return round(time.time() * 1000000000) / 1000000.0

    def getTimeSinceStart(self) -> float:
        """Milliseconds since the packet timeout was set."""
        time_since = self.getCurrentTime() - self.packet_start_time
        if time_since < 0.0:
            self.packet_start_time = self.getCurrentTime()
        return time_since

    # ------------------------------------------------------------------ USB loss

    @property
    def plugged(self) -> bool:
        """False while the adapter is unplugged or this port was opened before an unplug."""
        return self.model.usb_plugged and self._generation == self.model.usb_generation

    def unplug(self) -> None:
        """Pull the (shared) USB adapter: I/O on open ports raises ``termios.error`` (EIO)."""
        self.model.inject("unplug")

    def replug(self) -> None:
        """Put the adapter back: opening a port works again."""
        self.model.inject("replug")

    def _check_plugged(self) -> None:
        if not self.plugged:
            raise termios.error(errno.EIO, "Input/output error")
