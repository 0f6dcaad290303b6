"""Every private Prefect name the device agent relies on, pinned, and used nowhere but its adapter.

A Prefect upgrade that moves one of them fails here, in one place, with a message that names what
moved and where the device agent uses it, instead of somewhere deep in an orchestration test (or,
for an override whose base method was renamed, nowhere: the override would just stop being
called). Update the tables together with `device_agent/prefect_adapter.py`.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import inspect
import re
import threading
from pathlib import Path
from typing import Any

import prefect
import pytest

from tests.support.prefect_names import assert_internal_name, params

ADAPTER = "device_agent/prefect_adapter.py"

#: BaseWorker methods the adapter overrides (`WorkerAdapter`): name -> parameters
OVERRIDDEN = {
    "_submit_run": ["self", "flow_run"],
    "_release_limit_slot": ["self", "flow_run_id"],
    "_propose_submitting_state": ["self", "flow_run"],
    "_give_worker_labels_to_flow_run": ["self", "flow_run_id"],
}
#: BaseWorker methods the adapter calls
CALLED = {
    "_submit_run_and_capture_errors": ["self", "flow_run", "task_status"],
    "_submit_scheduled_flow_runs": ["self", "flow_run_response"],
    "_sync_and_initialize": ["self"],
    "_emit_worker_started_event": ["self"],
    "_propose_pending_state": ["self", "flow_run"],
    "_mark_flow_run_as_cancelled": ["self", "flow_run", "state_updates"],
}
#: BaseWorker instance attributes the adapter reads or sets
ATTRIBUTES = [
    "_runs_task_group",
    "_submitting_flow_run_ids",
    "_cancelling_observer",
    "_started_event",
    "_logger",
]
#: public BaseWorker members the device worker uses instead of private ones: name -> kind
PUBLIC = {
    "limiter": property,  # `ResortWorker.busy` (instead of `_limiter`)
    "work_pool": property,  # `QueuePickup` (instead of `_work_pool`)
    "client": property,
    "get_and_submit_flow_runs": None,  # the fallback poll
    "get_description": None,  # overridden instead of setting `_description`
    "get_documentation_url": None,  # overridden instead of setting `_documentation_url`
}
#: BaseJobConfiguration class methods the adapter overrides (`InProcessJobConfiguration`)
CONFIGURATION_OVERRIDDEN = {"_base_environment": []}
#: sha256 (first 16 hex digits) of `inspect.getsource(BaseWorker._submit_run)`: the adapter's
#: `WorkerAdapter._submit_run` is a copy with the device worker's cuts; an upstream change must be
#: merged into it
SUBMIT_RUN_SOURCE = "835f0493209733ae"

#: other internal names: (module, attribute, parameters or None)
ELSEWHERE: list[tuple[str, str, list[str] | None]] = [
    ("prefect.flow_engine", "observe_flow_run_suspension", None),
    ("prefect.flow_engine", "run_flow", None),
    ("prefect.context", "SyncClientContext", None),
    (
        "prefect.events.clients",
        "get_events_subscriber",
        ["filter", "reconnection_attempts", "reconnect_on_clean_close"],
    ),
    ("prefect.client.orchestration", "PrefectClient", None),
]
#: names only the adapter may use (the rest of device_agent calls the adapter's wrappers)
ADAPTER_ONLY = {
    "observe_flow_run_suspension",
    "run_flow",
    "SyncClientContext",
    "get_events_subscriber",
    "WorkerFlowRunResponse",
}


def _where(name: str) -> str:
    return f"Prefect {prefect.__version__}: BaseWorker.{name} (used by {ADAPTER})"


@pytest.mark.parametrize("name", sorted({**OVERRIDDEN, **CALLED}))
def test_base_worker_methods_keep_their_signatures(name: str) -> None:
    from prefect.workers.base import BaseWorker

    expected = {**OVERRIDDEN, **CALLED}[name]
    method = getattr(BaseWorker, name, None)
    assert method is not None, f"{_where(name)} is gone"
    assert params(method) == expected, f"{_where(name)} now takes {params(method)}"


def test_the_overrides_are_still_overrides() -> None:
    from prefect.workers.base import BaseJobConfiguration, BaseWorker

    from device_agent.prefect_adapter import InProcessJobConfiguration, WorkerAdapter

    for name in OVERRIDDEN:
        ours = WorkerAdapter.__dict__.get(name)
        assert ours is not None, f"WorkerAdapter no longer overrides {name}: update OVERRIDDEN"
        base = getattr(BaseWorker, name)
        assert inspect.iscoroutinefunction(ours) == inspect.iscoroutinefunction(base), (
            f"{_where(name)}: sync/async differs from the override"
        )
    for name, expected in CONFIGURATION_OVERRIDDEN.items():
        where = f"Prefect {prefect.__version__}: BaseJobConfiguration.{name} (used by {ADAPTER})"
        base = getattr(BaseJobConfiguration, name, None)
        assert base is not None, f"{where} is gone"
        assert params(base) == expected, f"{where} now takes {params(base)}"
        assert name in InProcessJobConfiguration.__dict__, f"the adapter no longer overrides {name}"


def test_base_worker_still_sets_the_attributes_read() -> None:
    from prefect.workers.base import BaseWorker

    source = inspect.getsource(BaseWorker)
    for name in ATTRIBUTES:
        assert f"self.{name} =" in source or f"self.{name}:" in source, (
            f"{_where(name)}: BaseWorker no longer sets it"
        )


def test_the_public_members_used_instead_are_there() -> None:
    from prefect.workers.base import BaseWorker

    for name, kind in PUBLIC.items():
        member = inspect.getattr_static(BaseWorker, name, None)
        where = f"Prefect {prefect.__version__}: BaseWorker.{name} (used by device_agent/worker)"
        assert member is not None, f"{where} is gone"
        if kind is not None:
            assert isinstance(member, kind), f"{where} is no longer a {kind.__name__}"


def test_the_copied_submission_path_matches_upstream() -> None:
    from prefect.workers.base import BaseWorker

    digest = hashlib.sha256(inspect.getsource(BaseWorker._submit_run).encode()).hexdigest()[:16]
    assert digest == SUBMIT_RUN_SOURCE, (
        f"{_where('_submit_run')} changed upstream (source digest {digest}): merge the change "
        "into WorkerAdapter._submit_run, then update SUBMIT_RUN_SOURCE"
    )


@pytest.mark.parametrize(("module", "name", "expected"), ELSEWHERE)
def test_other_internal_names_are_where_we_use_them(
    module: str, name: str, expected: list[str] | None
) -> None:
    assert_internal_name(module, name, expected, ADAPTER)


def test_the_raw_events_endpoint_and_client_request_are_there() -> None:
    from prefect.client.orchestration import PrefectClient
    from prefect.server.api import events

    where = f"Prefect {prefect.__version__}: PrefectClient.request (used by {ADAPTER})"
    assert params(PrefectClient.request)[:3] == ["self", "method", "path"], where
    routes = {(r.path, m) for r in events.router.routes for m in getattr(r, "methods", ()) or ()}
    assert ("/events", "POST") in routes, (
        f"Prefect {prefect.__version__}: POST /events is gone (used by {ADAPTER})"
    )


def test_suspension_observer_is_skipped_on_engine_threads_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import prefect.flow_engine as engine

    from device_agent.prefect_adapter import (
        EngineThread,
        skip_suspension_observer_on_engine_threads,
    )

    entered: list[str] = []

    @contextlib.contextmanager
    def original(*args: Any, **kwargs: Any) -> Any:
        entered.append(threading.current_thread().name)
        yield

    monkeypatch.setattr(engine, "observe_flow_run_suspension", original)
    assert skip_suspension_observer_on_engine_threads() is True
    assert skip_suspension_observer_on_engine_threads() is True  # idempotent
    patched = engine.observe_flow_run_suspension
    assert patched is not original

    with patched("run-id", "request"):
        pass

    def on_device() -> None:  # what the device thread's runs call
        with engine.observe_flow_run_suspension("run-id", "request"):
            pass

    device = EngineThread(target=on_device, name="device-test")
    device.start()
    device.join(10)
    assert entered == [threading.current_thread().name]  # only the call off the device thread


# ---------------------------------------------------------------------- the scan


def _prefect_private_names() -> set[str]:
    """Underscore names of Prefect's worker base classes (methods and instance attributes)."""
    from prefect.workers import base

    names = set(re.findall(r"self\.(_[a-z]\w*)", inspect.getsource(base)))
    for cls in (base.BaseWorker, base.BaseJobConfiguration, base.BaseVariables):
        names |= {n for n in dir(cls) if n.startswith("_") and not n.startswith("__")}
    return names


def _violations(path: Path, private: set[str]) -> list[str]:
    found: list[str] = []
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        where = f"{path}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Attribute) and node.attr in private:
            found.append(f"{where}: .{node.attr} (private to Prefect's BaseWorker)")
        elif isinstance(node, ast.Attribute) and node.attr in ADAPTER_ONLY:
            found.append(f"{where}: .{node.attr} (use the adapter's wrapper)")
        elif isinstance(node, ast.Name) and node.id in ADAPTER_ONLY:
            found.append(f"{where}: {node.id} (use the adapter's wrapper)")
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef) and (
                    item.name in private
                ):
                    found.append(f"{where}: {node.name}.{item.name} overrides a Prefect private")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("prefect"):
            module = node.module or ""
            if any(part.startswith("_") for part in module.split(".")):
                found.append(f"{where}: from {module} (a private Prefect module)")
            for alias in node.names:
                if alias.name.startswith("_") or alias.name in ADAPTER_ONLY:
                    found.append(f"{where}: from {module} import {alias.name}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "prefect" and any(p.startswith("_") for p in parts):
                    found.append(f"{where}: import {alias.name} (a private Prefect module)")
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and re.fullmatch(r"/events\S*", node.value)
        ):
            found.append(f"{where}: {node.value!r} (a raw Prefect endpoint)")
    return found


def test_no_private_prefect_name_outside_the_adapter() -> None:
    root = Path(__file__).resolve().parents[2]
    private = _prefect_private_names()
    assert {"_runs_task_group", "_submit_run", "_limiter"} <= private  # the scan sees them
    adapter = root / ADAPTER
    assert _violations(adapter, private), "the scan finds nothing even in the adapter"
    found = [
        violation
        for path in sorted((root / "device_agent").rglob("*.py"))
        if path != adapter
        for violation in _violations(path, private)
    ]
    assert not found, (
        f"private Prefect names outside {ADAPTER} (move them into it, next to the public "
        "alternative and why it does not serve):\n" + "\n".join(found)
    )
