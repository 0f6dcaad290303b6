"""Checks of the private Prefect names an adapter relies on, with messages that name what moved."""

from __future__ import annotations

import importlib
import inspect
from typing import Any

import prefect

__all__ = ["assert_internal_name", "params"]


def params(fn: Any) -> list[str]:
    """The parameter names of `fn`, in order."""
    return list(inspect.signature(fn).parameters)


def assert_internal_name(module: str, name: str, expected: list[str] | None, used_by: str) -> None:
    """Fail unless `module.name` exists (taking `expected` parameters, if given).

    The message names the Prefect version, the name and `used_by` (where the project uses it).
    """
    target = getattr(importlib.import_module(module), name, None)
    where = f"Prefect {prefect.__version__}: {module}.{name} (used by {used_by})"
    assert target is not None, f"{where} is gone"
    if expected is not None:
        assert params(target) == expected, f"{where} now takes {params(target)}"
