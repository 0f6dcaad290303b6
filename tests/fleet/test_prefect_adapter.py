"""Every private Prefect name `fleet` relies on, pinned; and none of them outside the adapter.

`fleet.core.prefect_adapter` is the one module of the `fleet` package that touches Prefect's
private or internal names. A Prefect upgrade that moves one fails here, with a message that names
what moved and which fleet module depends on it. Update the table together with the adapter.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import os
import re
from pathlib import Path
from typing import Any

import prefect
import pytest

import fleet

ADAPTER = "fleet/core/prefect_adapter.py"

#: (module, attribute path, parameters relied on or None, adapter function -> fleet modules)
PINS: list[tuple[str, str, list[str] | None, str]] = [
    (
        "prefect.client.base",
        "_parse_retry_after",
        ["value"],
        "relied on (not called) by RetryAfter503 in fleet/core/_server_main.py",
    ),
    (
        "prefect.server.api.server",
        "create_app",
        ["settings", "ephemeral", "webserver_only", "final", "ignore_cache"],
        "create_final_app, used by fleet/core/_server_main.py",
    ),
    (
        "prefect.context",
        "GLOBAL_SETTINGS_CONTEXT",
        None,
        "global_settings_kept, used by fleet/core/server/environment.py",
    ),
    (
        "prefect.context",
        "refresh_global_settings_context",
        [],
        "refresh_global_settings, used by fleet/core/server/environment.py",
    ),
    (
        "prefect.events.worker",
        "EventsWorker.drain_all",
        ["timeout", "at_exit"],
        "drain_queued_logs_and_events, used by fleet/core/server/lifecycle.py",
    ),
    (
        "prefect.logging.handlers",
        "APILogWorker.drain_all",
        ["timeout", "at_exit"],
        "drain_queued_logs_and_events, used by fleet/core/server/lifecycle.py",
    ),
    (
        "prefect.client.orchestration",
        "PrefectClient.increment_concurrency_slots_with_lease",
        ["self", "names", "slots", "mode", "lease_duration", "holder"],
        "increment_slot_with_lease, used by fleet/core/locks/slots.py",
    ),
    (
        "prefect.client.orchestration",
        "PrefectClient.release_concurrency_slots_with_lease",
        ["self", "lease_id"],
        "release_lease, used by fleet/core/locks/slots.py",
    ),
    (
        "prefect.client.orchestration",
        "SyncPrefectClient.renew_concurrency_lease",
        ["self", "lease_id", "lease_duration"],
        "renew_lease_sync, used by fleet/core/locks/lease.py and fleet/core/locks/verify.py",
    ),
    (
        "prefect.client.orchestration",
        "PrefectClient.request",
        ["self", "method", "path", "params", "path_params", "kwargs"],
        "post_events, used by fleet/core/watchdog.py",
    ),
    (
        "prefect.events.clients",
        "get_events_subscriber",
        ["filter", "reconnection_attempts", "reconnect_on_clean_close"],
        "events_subscriber, used by fleet/core/estop.py and fleet/core/_overview_watch.py",
    ),
    (
        "prefect.server.database.orm_models",
        "FlowRun",
        None,
        "allow_scheduled_runs_on_sqlalchemy_21, used by fleet/core/_server_main.py",
    ),
    (
        "prefect.cli._server_utils",
        "_run_all_services",
        [],
        "run_all_services, used by fleet/core/_services_main.py",
    ),
]

#: pydantic models whose fields the adapter reads or fills: (module, class, fields, used by)
MODELS: list[tuple[str, str, set[str], str]] = [
    (
        "prefect.client.schemas.responses",
        "ConcurrencyLimitWithLeaseResponse",
        {"lease_id", "limits"},
        "increment_slot_with_lease, used by fleet/core/locks/slots.py",
    ),
    (
        "prefect.client.schemas.objects",
        "ConcurrencyLeaseHolder",
        {"type", "id"},
        "increment_slot_with_lease, used by fleet/core/locks/slots.py",
    ),
]

#: names that may appear in the `fleet` package only inside the adapter
PRIVATE_NAMES = {path.rsplit(".", 1)[-1] for _, path, _, _ in PINS} - {"FlowRun", "request"}
PRIVATE_NAMES |= {name for _, name, _, _ in MODELS} | {"orm_models", "bulk_dml_setter"}
HTTP_METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE"}


def _where(module: str, path: str, used_by: str) -> str:
    return f"Prefect {prefect.__version__}: {module}.{path} (adapter: {used_by})"


def _resolve(module: str, path: str) -> Any:
    target: Any = importlib.import_module(module)
    for part in path.split("."):
        target = getattr(target, part, None)
        if target is None:
            return None
    return target


@pytest.mark.parametrize(("module", "path", "params", "used_by"), PINS)
def test_each_private_name_is_where_the_adapter_uses_it(
    module: str, path: str, params: list[str] | None, used_by: str
) -> None:
    target = _resolve(module, path)
    where = _where(module, path, used_by)
    assert target is not None, f"{where} is gone"
    if params is not None:
        got = list(inspect.signature(target).parameters)
        assert got == params, f"{where} now takes {got}"


@pytest.mark.parametrize(("module", "name", "fields", "used_by"), MODELS)
def test_the_lease_schemas_keep_their_fields(
    module: str, name: str, fields: set[str], used_by: str
) -> None:
    model = _resolve(module, name)
    where = _where(module, name, used_by)
    assert model is not None, f"{where} is gone"
    missing = fields - set(model.model_fields)
    assert not missing, f"{where} no longer has the fields {sorted(missing)}"


def test_the_server_still_takes_events_at_post_events() -> None:
    from prefect.server.api import events

    routes = {(r.path, m) for r in events.router.routes for m in getattr(r, "methods", None) or ()}
    assert ("/events", "POST") in routes, _where(
        "prefect.server.api.events", "router: POST /events", "post_events, fleet/core/watchdog.py"
    )


def test_create_app_still_runs_no_services_when_told_by_the_environment() -> None:
    from prefect.server.api.server import create_app

    from fleet.core.prefect_adapter import WEBSERVER_ONLY_ENV

    assert WEBSERVER_ONLY_ENV in inspect.getsource(create_app), _where(
        "prefect.server.api.server",
        f"create_app no longer reads {WEBSERVER_ONLY_ENV}",
        "WEBSERVER_ONLY_ENV, used by fleet/core/server/process.py",
    )


def test_the_flow_run_state_hybrid_still_lacks_a_bulk_dml_setter_or_has_ours() -> None:
    """`allow_scheduled_runs_on_sqlalchemy_21` sets it in place."""
    from prefect.server.database import orm_models

    hybrid = orm_models.FlowRun.__dict__.get("state")
    assert hybrid is not None and hasattr(hybrid, "bulk_dml_setter"), _where(
        "prefect.server.database.orm_models",
        "FlowRun.state is no hybrid with a bulk_dml_setter",
        "allow_scheduled_runs_on_sqlalchemy_21, used by fleet/core/_server_main.py",
    )


def test_the_scheduler_insert_is_allowed_on_sqlalchemy_21() -> None:
    """Prefect's scheduler (3.8.8, 3.9.1) bulk-inserts runs with a `state` key (a hybrid)."""
    from prefect.server.database import orm_models

    from fleet.core.prefect_adapter import allow_scheduled_runs_on_sqlalchemy_21

    hybrid = orm_models.FlowRun.__dict__["state"]
    allow_scheduled_runs_on_sqlalchemy_21()
    assert hybrid.bulk_dml_setter is not None
    assert allow_scheduled_runs_on_sqlalchemy_21() is False  # once is enough


def test_the_global_settings_are_re_read_and_put_back(monkeypatch: pytest.MonkeyPatch) -> None:
    import prefect.context

    from fleet.core import prefect_adapter

    before = prefect.context.GLOBAL_SETTINGS_CONTEXT
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")
    with prefect_adapter.global_settings_kept():
        prefect_adapter.refresh_global_settings()
        assert prefect.context.GLOBAL_SETTINGS_CONTEXT.settings.api.url == "http://127.0.0.1:9/api"
    assert prefect.context.GLOBAL_SETTINGS_CONTEXT is before


# --------------------------------------------------------------------------- the scan


PRIVATE_PATH = re.compile(r"\bprefect(\.\w+)*\._\w+")


def _private(dotted: str) -> bool:
    return any(part.startswith("_") for part in dotted.split("."))


def _violations(source: str) -> list[str]:
    """Private Prefect names and raw API requests in `source`, as `line: what` strings."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "prefect":
            found += [
                f"{line}: from {node.module} import {alias.name}"
                for alias in node.names
                if _private(f"{node.module}.{alias.name}") or alias.name in PRIVATE_NAMES
            ]
        elif isinstance(node, ast.Import):
            found += [
                f"{line}: import {alias.name}"
                for alias in node.names
                if alias.name.split(".")[0] == "prefect" and _private(alias.name)
            ]
        elif isinstance(node, ast.Attribute) and node.attr in PRIVATE_NAMES:
            found.append(f"{line}: .{node.attr}")
        elif isinstance(node, ast.Name) and node.id in PRIVATE_NAMES:
            found.append(f"{line}: {node.id}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            found += [f"{line}: {m.group(0)!r}" for m in PRIVATE_PATH.finditer(node.value)]
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "request"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and node.args[0].value in HTTP_METHODS
        ):
            found.append(f"{line}: raw request {node.args[0].value}")
    return found


def test_the_scan_finds_each_kind_of_private_use() -> None:
    sample = (
        "from prefect.client.base import _parse_retry_after\n"
        "import prefect._internal.concurrency\n"
        "from prefect.server.database import orm_models\n"
        "x = prefect.context.GLOBAL_SETTINGS_CONTEXT\n"
        "EventsWorker.drain_all(timeout=1)\n"
        "await client.request('POST', '/events', json=[])\n"
        "name = 'prefect._internal.concurrency.services'\n"
    )
    assert len(_violations(sample)) == 7, _violations(sample)
    assert _violations("from prefect.events import emit_event\nclient.read_flow_runs()\n") == []


def test_no_private_prefect_name_outside_the_adapter() -> None:
    root = Path(fleet.__file__).parent
    found = []
    for path in sorted(root.rglob("*.py")):
        rel = os.path.relpath(path, root.parent)
        if rel == ADAPTER:
            continue
        found += [f"{rel}:{v}" for v in _violations(path.read_text())]
    assert not found, (
        f"private Prefect names outside {ADAPTER} (route them through it, with the public "
        f"alternative named, and pin them in {__file__}): {found}"
    )
