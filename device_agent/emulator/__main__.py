"""`python -m device_agent.emulator --link PATH ...`: the `emulate` verb without the full CLI."""

from __future__ import annotations

import sys

from device_agent.cli.emulate import emulate_main

if __name__ == "__main__":
    sys.exit(emulate_main())
