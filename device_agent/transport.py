"""The serial wire to one XM430-W350: `dynamixel_sdk` + pyserial, behind one lock per transaction.

The only module that imports `dynamixel_sdk` and `serial` (checked by import-linter). It turns the
SDK's `(value, comm_result, error)` tuples into values and typed errors:

* a COMM_* failure raises `CommunicationError` (with `.result`); after a timeout or a corrupt reply
  it waits for a late status packet and clears the input buffer, so that packet is never taken as
  the answer to the next request;
* `termios.error`, `OSError` and `serial.SerialException` (USB unplugged) raise `PortLostError`
  and reset the SDK's `port.is_using` flag, which the SDK otherwise leaves set forever (6.2);
  `reopen()` builds a fresh `PortHandler`;
* a status error number on a write raises `WriteRejectedError` naming item, value and error;
* the status *alert* bit (hardware error, read address 70) never fails a read: it is exposed as
  `last_alert` (per calling thread) for the driver to decode;
* the open tty is locked for this process (`device_agent.port_lock`): a second process opening the
  same port gets `PortBusyError` naming the holder;
* `read_span(first, last)` reads every item from `first` to `last` in one transaction (a move's
  poll is one read instead of three).
"""

from __future__ import annotations

import errno
import logging
import termios
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

import dynamixel_sdk
import serial

from device_agent import control_table as ct
from device_agent.errors import (
    CommunicationError,
    ConfigurationError,
    NotConnectedError,
    PortBusyError,
    PortLostError,
    WriteRejectedError,
)
from device_agent.port_lock import lock_port
from resort_common.tunables import SDK_BAUDRATES

__all__ = ["COMM_RESULTS", "PortFactory", "SdkTransport", "Transport"]

log = logging.getLogger(__name__)

# Builds a PortHandler (or an in-memory look-alike) for a device path.
PortFactory = Callable[[str], Any]

COMM_RESULTS = {
    dynamixel_sdk.COMM_SUCCESS: "success",
    dynamixel_sdk.COMM_PORT_BUSY: "port busy",
    dynamixel_sdk.COMM_TX_FAIL: "transmit failed",
    dynamixel_sdk.COMM_RX_FAIL: "receive failed",
    dynamixel_sdk.COMM_TX_ERROR: "incorrect instruction packet",
    dynamixel_sdk.COMM_RX_WAITING: "still receiving",
    dynamixel_sdk.COMM_RX_TIMEOUT: "no status packet (timeout)",
    dynamixel_sdk.COMM_RX_CORRUPT: "corrupt status packet",
    dynamixel_sdk.COMM_NOT_AVAILABLE: "not available",
}
_LATE_RESULTS = (dynamixel_sdk.COMM_RX_TIMEOUT, dynamixel_sdk.COMM_RX_CORRUPT)
# Worth one more attempt: a late/corrupt reply, or a port left busy by an interrupted call.
_RETRY_RESULTS = (*_LATE_RESULTS, dynamixel_sdk.COMM_PORT_BUSY)
_PORT_ERRORS = (termios.error, OSError, serial.SerialException)


class Transport(Protocol):
    """What the driver needs from a wire to one servo (see `SdkTransport`)."""

    port: str
    motor_id: int

    @property
    def is_open(self) -> bool: ...  # pragma: no cover - protocol

    @property
    def last_alert(self) -> bool: ...  # pragma: no cover - protocol

    def open(self) -> None: ...  # pragma: no cover - protocol

    def close(self) -> None: ...  # pragma: no cover - protocol

    def reopen(self) -> None: ...  # pragma: no cover - protocol

    def ping(self) -> int: ...  # pragma: no cover - protocol

    def read(self, item: str | ct.Item) -> int: ...  # pragma: no cover - protocol

    def read_span(self, first: str, last: str) -> dict[str, int]: ...  # pragma: no cover - protocol

    def write(self, item: str | ct.Item, value: int) -> None: ...  # pragma: no cover - protocol

    def write_once(
        self, item: str | ct.Item, value: int
    ) -> None: ...  # pragma: no cover - protocol

    def reboot(self) -> None: ...  # pragma: no cover - protocol


def _item(item: str | ct.Item) -> ct.Item:
    if isinstance(item, ct.Item):
        return item
    try:
        return ct.item(item)
    except KeyError:
        raise ConfigurationError(f"{item!r} is not an XM430-W350 control-table item") from None


class SdkTransport:
    """Protocol 2.0 transactions with one servo through the real Dynamixel SDK.

    Args:
        port: device path, e.g. ``/dev/serial/by-id/usb-FTDI...`` or an emulator's link.
        baudrate: one of `resort_common.tunables.SDK_BAUDRATES` (the SDK refuses any other).
        motor_id: the servo's ID (0-252).
        port_factory: builds the port object for `port`; default `dynamixel_sdk.PortHandler`.
            Tests pass the emulator's in-memory `MemoryPort` here.
        late_grace: seconds to wait after a timeout/corrupt reply before clearing the input
            buffer, so a late status packet is dropped instead of answering the next request.
        retries: extra attempts for a transaction that timed out or got a corrupt reply (all
            transactions used are idempotent register reads/writes and pings). The SDK's status
            timeout is only ~34 ms, which a busy Pi (or CI box) can miss without any fault.
    """

    def __init__(
        self,
        port: str,
        baudrate: int,
        motor_id: int,
        *,
        port_factory: PortFactory | None = None,
        late_grace: float = 0.06,
        retries: int = 2,
    ) -> None:
        self.port = port
        self.baudrate = baudrate
        self.motor_id = motor_id
        self._factory: PortFactory = port_factory or dynamixel_sdk.PortHandler
        self._packets = dynamixel_sdk.PacketHandler(2.0)
        self._handler: Any = None
        self._lock = threading.Lock()
        self._local = threading.local()
        self._late_grace = late_grace
        self._retries = retries

    # -- port life cycle ------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        """True while a port object is open (it may still have been unplugged since)."""
        return self._handler is not None and bool(getattr(self._handler, "is_open", False))

    @property
    def last_alert(self) -> bool:
        """Alert bit (hardware error) of the last status packet this thread received."""
        return bool(getattr(self._local, "alert", False))

    def open(self) -> None:
        """Open the port at `baudrate` (no-op when already open).

        Raises:
            ConfigurationError: the SDK refuses the baud rate.
            PortLostError: the device path does not exist or cannot be opened.
        """
        with self._lock:
            if self.is_open:
                return
            self._open_locked()

    def _open_locked(self) -> None:
        if self.baudrate not in SDK_BAUDRATES:
            raise ConfigurationError(
                f"baudrate {self.baudrate} is not accepted by the Dynamixel SDK "
                f"(allowed: {', '.join(map(str, SDK_BAUDRATES))})"
            )
        handler = self._factory(self.port)
        try:
            if not handler.openPort():
                raise PortLostError(f"cannot open serial port {self.port}")
            if not handler.setBaudRate(self.baudrate):
                self._close_quietly(handler)
                raise ConfigurationError(
                    f"baudrate {self.baudrate} refused by the port {self.port}"
                )
            self._lock_tty(handler)
        except PortBusyError:
            self._close_quietly(handler)
            raise
        except _PORT_ERRORS as exc:
            self._close_quietly(handler)
            if getattr(exc, "errno", None) == errno.ENOENT:
                raise PortLostError(
                    f"serial port {self.port} does not exist (unplugged, emulator not running "
                    "or wrong path)"
                ) from exc
            raise PortLostError(f"cannot open serial port {self.port}: {exc}") from exc
        self._handler = handler
        log.debug("opened %s at %d baud", self.port, self.baudrate)

    def close(self) -> None:
        """Close the port (never raises; the port may already be gone)."""
        with self._lock:
            handler, self._handler = self._handler, None
            if handler is not None:
                self._close_quietly(handler)

    def reopen(self) -> None:
        """Drop the old port object and open a fresh one (recovery after a USB replug).

        Raises:
            PortLostError: the device is still missing.
        """
        with self._lock:
            handler, self._handler = self._handler, None
            if handler is not None:
                self._close_quietly(handler)
            self._open_locked()

    def _lock_tty(self, handler: Any) -> None:
        """Lock the tty for this process (ports without a file descriptor are not locked)."""
        ser = getattr(handler, "ser", None)
        fileno = getattr(ser, "fileno", None)
        if fileno is None:
            return  # the in-memory port of the tests
        lock_port(fileno(), self.port)

    @staticmethod
    def _close_quietly(handler: Any) -> None:
        handler.is_using = False
        try:
            if getattr(handler, "ser", True) is not None:
                handler.closePort()
        except (*_PORT_ERRORS, AttributeError) as exc:
            log.debug("closing a lost port: %s", exc)

    # -- transactions ---------------------------------------------------------------------------

    def ping(self) -> int:
        """Ping the servo and return its model number (1020 for an XM430-W350)."""
        model, error = self._transact(
            "ping", lambda h: self._packets.ping(h, self.motor_id), retry=True
        )
        self._note_status(error)
        return int(model)

    def read(self, item: str | ct.Item) -> int:
        """Read one control-table item, sign-converted when the item is signed.

        A status packet carrying the alert bit still returns the value; see `last_alert`.

        Raises:
            CommunicationError: timeout, corrupt or mismatched reply, or an error number.
            PortLostError: the serial device is gone.
        """
        it = _item(item)
        data, error = self._transact(
            f"read {it.name}",
            lambda h: self._packets.readTxRx(h, self.motor_id, it.address, it.size),
            retry=True,
            expect=it.size,
        )
        status = self._note_status(error)
        if status.error:
            raise CommunicationError(
                f"read {it.name} (address {it.address}) refused: {status.error_name}"
            )
        value = int.from_bytes(bytes(data[: it.size]), "little")
        return ct.to_signed(value, it.size) if it.signed else value

    def read_span(self, first: str, last: str) -> dict[str, int]:
        """Read every item from `first` to `last` (inclusive) in one transaction.

        Returns:
            item name -> value (signed items sign-converted) for every item in the span.

        Raises:
            CommunicationError, PortLostError: as `read`.
        """
        start, end = _item(first), _item(last)
        length = end.address + end.size - start.address
        if length <= 0:
            raise ConfigurationError(f"read_span: {last} lies before {first}")
        data, error = self._transact(
            f"read {first}..{last}",
            lambda h: self._packets.readTxRx(h, self.motor_id, start.address, length),
            retry=True,
            expect=length,
        )
        status = self._note_status(error)
        if status.error:
            raise CommunicationError(
                f"read {first}..{last} (address {start.address}+{length}) refused: "
                f"{status.error_name}"
            )
        return ct.decode_block(start.address, bytes(data[:length]))

    def write(self, item: str | ct.Item, value: int) -> None:
        """Write one control-table item and check both the transfer and the servo's answer.

        A transfer whose status packet is lost or broken is sent again (up to `retries` times).

        Raises:
            WriteRejectedError: the servo answered with an error number (range, access, ...).
            CommunicationError: the write was not acknowledged.
            PortLostError: the serial device is gone.
        """
        self._write(_item(item), value, retry=True)

    def write_once(self, item: str | ct.Item, value: int) -> None:
        """Write `item` without ever sending it twice when it landed: a motion command.

        A lost or broken status packet does not mean the write was lost. Instead of sending it
        again (a second goal while the servo already moves), read the item back and write it
        again only when the servo does not hold `value`.

        Raises:
            WriteRejectedError, CommunicationError, PortLostError: as `write`.
        """
        it = _item(item)
        try:
            self._write(it, value, retry=False)
        except CommunicationError as exc:
            if isinstance(exc, PortLostError) or exc.result not in _RETRY_RESULTS:
                raise
            if self.read(it) == value:
                log.debug("write %s=%s: status lost, the servo holds it", it.name, value)
                return
            self._write(it, value, retry=False)

    def _write(self, it: ct.Item, value: int, *, retry: bool) -> None:
        raw = int(value) & ((1 << (8 * it.size)) - 1)
        data = list(raw.to_bytes(it.size, "little"))
        _, error = self._transact(
            f"write {it.name}={value}",
            lambda h: (
                None,
                *self._packets.writeTxRx(h, self.motor_id, it.address, it.size, data),
            ),
            retry=retry,
        )
        status = self._note_status(error)
        if status.error:
            raise WriteRejectedError(
                f"write {it.name} (address {it.address}) = {value} rejected by the servo: "
                f"{status.error_name}",
                address=it.address,
                error=status.error,
            )

    def reboot(self) -> None:
        """Send REBOOT. A missing status is tolerated (some servos reboot before answering)."""
        try:
            _, error = self._transact(
                "reboot",
                lambda h: (None, *self._packets.reboot(h, self.motor_id)),
                retry=False,
            )
        except CommunicationError as exc:
            if isinstance(exc, PortLostError) or exc.result not in _LATE_RESULTS:
                raise
            log.warning("no status for REBOOT (%s); assuming the servo is rebooting", exc)
            return
        self._note_status(error)

    def _note_status(self, error: int) -> ct.Status:
        status = ct.Status.from_byte(int(error))
        self._local.alert = status.alert
        return status

    def _transact(
        self,
        what: str,
        call: Callable[[Any], tuple[Any, int, int]],
        *,
        retry: bool,
        expect: int | None = None,
    ) -> tuple[Any, int]:
        """Run one SDK call under the bus lock; returns (payload, status error byte)."""
        attempts = 1 + (self._retries if retry else 0)
        for attempt in range(attempts):
            with self._lock:
                handler = self._handler
                if handler is None:
                    raise NotConnectedError(f"{self.port}: port is not open (connect first)")
                try:
                    payload, result, error = call(handler)
                except _PORT_ERRORS as exc:
                    handler.is_using = False
                    raise PortLostError(
                        f"{self.port}: serial port lost during {what} ({exc}); "
                        "reconnect when the device is back"
                    ) from exc
                if result == dynamixel_sdk.COMM_PORT_BUSY:
                    handler.is_using = False  # left set by an exception mid-transaction (6.2)
                if (
                    result == dynamixel_sdk.COMM_SUCCESS
                    and expect is not None
                    and len(payload) != expect
                ):
                    result = dynamixel_sdk.COMM_RX_CORRUPT  # a stale packet of another length
                if result == dynamixel_sdk.COMM_SUCCESS:
                    return payload, error
                if result in _LATE_RESULTS:
                    self._drain_locked(handler)
            description = COMM_RESULTS.get(result, f"result {result}")
            if attempt + 1 < attempts and result in _RETRY_RESULTS:
                log.debug("%s on %s: %s, retrying", what, self.port, description)
                continue
            raise CommunicationError(
                f"{what} on {self.port} (id {self.motor_id}) failed: {description}", result=result
            )
        raise AssertionError("unreachable")  # pragma: no cover

    def _drain_locked(self, handler: Any) -> None:
        """Wait for a late status packet and drop it, so it cannot answer the next request."""
        time.sleep(self._late_grace)
        try:
            handler.clearPort()
        except _PORT_ERRORS as exc:
            handler.is_using = False
            raise PortLostError(f"{self.port}: serial port lost ({exc})") from exc
