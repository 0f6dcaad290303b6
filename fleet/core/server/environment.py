"""Prefect's environment for a block of code, process-wide: `prefect_environment`."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping

from fleet.core import prefect_adapter

__all__ = ["prefect_environment"]


@contextlib.contextmanager
def prefect_environment(updates: Mapping[str, str]) -> Iterator[None]:
    """Set Prefect environment variables for the enclosed block, process-wide, then restore.

    Prefect snapshots the environment into its global settings when first imported; threads that
    do not copy the caller's context (event and log workers, lease renewal) read that snapshot,
    so it is re-read here and the previous one put back on exit.
    """
    saved = {k: os.environ.get(k) for k in updates}
    with prefect_adapter.global_settings_kept():
        os.environ.update(updates)
        try:
            prefect_adapter.refresh_global_settings()
            yield
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
