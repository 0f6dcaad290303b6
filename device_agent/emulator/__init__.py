"""Protocol-faithful XM430-W350 emulator: in memory (unit tests) or on a pty in its own process."""

from __future__ import annotations

__all__: list[str] = []
