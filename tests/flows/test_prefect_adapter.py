"""`flows.prefect_adapter` is the one place of `flows` and `fleet.client` with Prefect internals.

Each internal name the adapter relies on is pinned with the signature it relies on, so a Prefect
upgrade that moves one fails here with a message naming what moved and where it is used; a scan
of the sources keeps every other module of `flows` and `fleet.client` on Prefect's public API.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
from pathlib import Path
from typing import Any

import prefect
import pytest

ROOT = Path(__file__).resolve().parents[2]
ADAPTER = ROOT / "flows" / "prefect_adapter.py"

#: (module, name, the parameters relied on, what relies on it)
PINNED: list[tuple[str, str, list[str], str]] = [
    (
        "prefect.utilities.asyncutils",
        "run_coro_as_sync",
        ["coroutine", "force_new_thread", "wait_for_result"],
        "flows.prefect_adapter.run_sync (flows.results, fleet.client.blocking)",
    ),
    (
        "prefect.events.clients",
        "get_events_subscriber",
        ["filter", "reconnection_attempts", "reconnect_on_clean_close"],
        "flows.prefect_adapter.wait_for_final_event (flows.waiting.wait_final)",
    ),
    (
        "prefect.flow_engine",
        "run_flow",
        ["flow", "flow_run", "parameters", "wait_for", "return_type", "error_logger", "context"],
        "flows.prefect_adapter.run_claimed_flow_run (fleet.client.controller)",
    ),
    (
        "prefect.flow_runs",
        "wait_for_flow_run",
        ["flow_run_id", "timeout", "poll_interval", "client", "log_states"],
        "flows.prefect_adapter.wait_for_final_event (flows.waiting.wait_final)",
    ),
]

#: Prefect modules that are internal as a whole (no underscore in their names)
INTERNAL_MODULES = (
    "prefect.utilities.asyncutils",
    "prefect.events.clients",
    "prefect.flow_engine",
    "prefect.server",
    "prefect.context",
)
#: internal names that may be reached from a public module
INTERNAL_NAMES = {
    "run_coro_as_sync",
    "get_events_subscriber",
    "FlowRunContext",
    "TaskRunContext",
    "SettingsContext",
    "GLOBAL_SETTINGS_CONTEXT",
}


def _where(module: str, name: str, used_by: str) -> str:
    return f"Prefect {prefect.__version__}: {module}.{name} (used by {used_by})"


def _params(fn: Any) -> list[str]:
    return list(inspect.signature(fn).parameters)


@pytest.mark.parametrize(("module", "name", "params", "used_by"), PINNED)
def test_each_internal_name_keeps_its_signature(
    module: str, name: str, params: list[str], used_by: str
) -> None:
    target = getattr(importlib.import_module(module), name, None)
    assert target is not None, f"{_where(module, name, used_by)} is gone"
    assert _params(target) == params, f"{_where(module, name, used_by)} now takes {_params(target)}"


def test_wait_for_flow_run_still_subscribes_with_the_default_reconnect_policy() -> None:
    """`flows.waiting.wait_final` re-subscribes because the subscriber gives up after its default
    reconnection attempts; a changed call or default changes how long a lost server is hidden."""
    from prefect.events.clients import get_events_subscriber
    from prefect.flow_runs import wait_for_flow_run

    used_by = "flows.prefect_adapter.wait_for_final_event (flows.waiting.wait_final)"
    calls = re.findall(r"get_events_subscriber\(([^)]*)\)", inspect.getsource(wait_for_flow_run))
    assert calls == ["filter=event_filter"], (
        f"{_where('prefect.flow_runs', 'wait_for_flow_run', used_by)} now subscribes with {calls}"
    )
    default = inspect.signature(get_events_subscriber).parameters["reconnection_attempts"].default
    assert default == 10, (
        f"{_where('prefect.events.clients', 'get_events_subscriber', used_by)}: "
        f"reconnection_attempts now defaults to {default}"
    )


def test_run_sync_runs_a_coroutine_from_sync_code_and_inside_a_running_loop() -> None:
    import asyncio

    from flows.prefect_adapter import run_sync

    async def answer() -> int:
        return 42

    async def nested() -> int:
        return run_sync(answer())

    assert run_sync(answer()) == 42
    assert asyncio.run(nested()) == 42


def _sources() -> list[Path]:
    files = [
        *sorted((ROOT / "flows").rglob("*.py")),
        *sorted((ROOT / "fleet" / "client").rglob("*.py")),
    ]
    return [f for f in files if f != ADAPTER]


def _private_uses(path: Path) -> list[str]:
    """Private Prefect names in one module: underscore names, internal modules and names,
    raw requests to the server (`<client>.request(...)`)."""
    found: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("prefect"):
            module = node.module or ""
            for alias in node.names:
                if (
                    any(part.startswith("_") for part in module.split("."))
                    or alias.name.startswith("_")
                    or module.startswith(INTERNAL_MODULES)
                    or alias.name in INTERNAL_NAMES
                ):
                    found.append(f"line {node.lineno}: from {module} import {alias.name}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                name = alias.name
                if name.startswith("prefect") and (
                    any(p.startswith("_") for p in name.split("."))
                    or name.startswith(INTERNAL_MODULES)
                ):
                    found.append(f"line {node.lineno}: import {name}")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "request"
        ):
            found.append(f"line {node.lineno}: raw request .request(...)")
    return found


def test_no_private_prefect_name_outside_the_adapter() -> None:
    offenders = {
        str(path.relative_to(ROOT)): uses for path in _sources() if (uses := _private_uses(path))
    }
    assert not offenders, (
        f"private Prefect names outside flows/prefect_adapter.py: {offenders}; "
        "move them into the adapter with the public alternative named, and pin them here"
    )


def test_the_scan_sees_what_the_adapter_uses() -> None:
    """The scan is not blind: on the adapter itself it finds the internal name it wraps."""
    assert any("run_coro_as_sync" in use for use in _private_uses(ADAPTER))
