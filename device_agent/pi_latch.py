"""The e-stop latch kept on the Pi: one JSON file in the agent's state directory.

The fleet's latch is a Prefect variable, which an agent cannot read while the server is away. So
the agent keeps its own copy, `<state_dir>/estop-latch.json`, written atomically (temporary file,
fsync, rename, fsync of the directory) on every stop and every clear it applies, and read *before*
the serial port is opened. Motion needs both latches clear; a file that exists but cannot be read
or parsed counts as latched (fail closed). A missing file means "never stopped here".

`device-agent ctl` honours the latches of every agent state directory under its state root that
names the same serial port (`latches_for_port`), and its `estop` / `estop-clear` write them.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from device_agent.errors import DeviceError

__all__ = [
    "LATCH_FILE",
    "STATE_ROOT",
    "STATE_ROOT_ENV",
    "LatchFile",
    "LatchRecord",
    "latches_for_port",
    "state_root",
]

LATCH_FILE = "estop-latch.json"
#: Where agents keep their state on a Pi (one directory per resort below it).
STATE_ROOT = Path("/var/lib/plate-resort-agent")
STATE_ROOT_ENV = "PLATE_RESORT_STATE_DIR"


def state_root() -> Path:
    """`$PLATE_RESORT_STATE_DIR`, else `/var/lib/plate-resort-agent`."""
    return Path(os.environ.get(STATE_ROOT_ENV) or STATE_ROOT)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True, slots=True)
class LatchRecord:
    """What the latch file says.

    Attributes:
        estopped: True while the resort must not move.
        reason: why it was stopped (or why the file is treated as stopped).
        command_id: the fleet command that set or cleared it (None for a local one).
        at: when it was written here (ISO 8601, UTC); empty when the file is unreadable.
        resort: the resort's name.
        serial_port: the port of the resort's servo (how `ctl` finds the latch).
        by: who set it (`fleet estop`, `device-agent ctl`, ...).
        command_at: when the command was given (ISO 8601, the commanding host's clock).
    """

    estopped: bool
    reason: str
    command_id: str | None
    at: str
    resort: str
    serial_port: str
    by: str = ""
    command_at: str | None = None


class LatchFile:
    """The latch file of one resort.

    Args:
        path: the file (`<state_dir>/estop-latch.json`).
        resort: the resort's name (written into the record).
        serial_port: the resort's port (written into the record).
    """

    def __init__(self, path: Path, *, resort: str, serial_port: str) -> None:
        self.path = Path(path)
        self.resort = resort
        self.serial_port = serial_port

    @classmethod
    def in_state_dir(cls, state_dir: Path, *, resort: str, serial_port: str) -> LatchFile:
        """The latch file of the agent whose state directory is `state_dir`."""
        return cls(Path(state_dir) / LATCH_FILE, resort=resort, serial_port=serial_port)

    def read(self) -> LatchRecord | None:
        """The record, None when the file does not exist; an unreadable file reads as stopped."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            return self._unreadable(f"cannot read {self.path}: {exc.strerror}")
        try:
            data = json.loads(text)
            if not isinstance(data, dict) or not isinstance(data.get("estopped"), bool):
                raise ValueError("no boolean 'estopped'")
            return LatchRecord(
                estopped=data["estopped"],
                reason=str(data.get("reason") or ""),
                command_id=data.get("command_id") if data.get("command_id") else None,
                at=str(data.get("at") or ""),
                resort=str(data.get("resort") or self.resort),
                serial_port=str(data.get("serial_port") or self.serial_port),
                by=str(data.get("by") or ""),
                command_at=str(data["command_at"]) if data.get("command_at") else None,
            )
        except ValueError as exc:
            return self._unreadable(f"{self.path} is not a valid latch file ({exc})")

    def _unreadable(self, why: str) -> LatchRecord:
        return LatchRecord(True, f"latch unreadable: {why}", None, "", self.resort, "")

    def latched(self) -> LatchRecord | None:
        """The record when it says stopped (or is unreadable), else None."""
        record = self.read()
        return record if record is not None and record.estopped else None

    def write(
        self,
        estopped: bool,
        reason: str,
        command_id: str | None = None,
        *,
        by: str = "",
        command_at: str | None = None,
    ) -> LatchRecord:
        """Replace the latch atomically; returns what was written.

        Raises:
            DeviceError: the state directory is not writable.
        """
        record = LatchRecord(
            estopped, reason, command_id, _now(), self.resort, self.serial_port, by, command_at
        )
        data: dict[str, Any] = asdict(record)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "w", encoding="utf-8") as handle:
                json.dump(data, handle, sort_keys=True)
                handle.write("\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
            dir_fd = os.open(self.path.parent, os.O_DIRECTORY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise DeviceError(f"cannot write the e-stop latch {self.path}: {exc}") from exc
        return record


def _same_port(a: str, b: str) -> bool:
    if not a or not b:
        return False
    if os.path.abspath(a) == os.path.abspath(b):
        return True
    try:
        return os.path.realpath(a) == os.path.realpath(b)
    except OSError:
        return False


def latches_for_port(root: Path, serial_port: str) -> list[LatchFile]:
    """Latch files under `root` (itself and its subdirectories) that name `serial_port`."""
    candidates = [root / LATCH_FILE]
    with contextlib.suppress(OSError):
        candidates += sorted(p / LATCH_FILE for p in root.iterdir() if p.is_dir())
    found = []
    for path in candidates:
        if not path.exists():
            continue
        latch = LatchFile(path, resort=path.parent.name, serial_port="")
        record = latch.read()
        if record is None:
            continue
        if not record.serial_port or _same_port(record.serial_port, serial_port):
            found.append(LatchFile(path, resort=record.resort, serial_port=serial_port))
    return found
