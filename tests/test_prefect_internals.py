"""Every private Prefect name this project relies on, with the signature it relies on.

A Prefect upgrade that moves one of them fails here, in one place, with a message that names what
moved and which module of ours uses it, instead of somewhere deep in an orchestration test (or,
for an override whose base method was renamed, nowhere: the override would just stop being
called). Update the table together with the module that uses the name.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
from typing import Any

import prefect
import pytest

#: BaseWorker methods the device worker overrides (device_agent/worker.py): name -> parameters
OVERRIDDEN = {
    "_submit_run": ["self", "flow_run"],
    "_release_limit_slot": ["self", "flow_run_id"],
    "_propose_submitting_state": ["self", "flow_run"],
    "_give_worker_labels_to_flow_run": ["self", "flow_run_id"],
}
#: BaseWorker methods the device worker calls
CALLED = {
    "_submit_run_and_capture_errors": ["self", "flow_run", "task_status"],
    "_submit_scheduled_flow_runs": ["self", "flow_run_response"],
    "_sync_and_initialize": ["self"],
    "_emit_worker_started_event": ["self"],
    "_propose_pending_state": ["self", "flow_run"],
    "_mark_flow_run_as_cancelled": ["self", "flow_run", "state_updates"],
}
#: BaseWorker instance attributes the device worker reads
ATTRIBUTES = [
    "_runs_task_group",
    "_limiter",
    "_submitting_flow_run_ids",
    "_cancelling_observer",
    "_work_pool",
    "_work_pool_name",
    "_work_queues",
    "_prefetch_seconds",
    "_logger",
]
#: sha256 (first 16 hex digits) of `inspect.getsource(BaseWorker._submit_run)`: the device
#: worker's `_submit_run` is a copy with latency cuts; an upstream change must be merged into it
SUBMIT_RUN_SOURCE = "835f0493209733ae"

#: other private or internal names: (module, attribute, parameters or None, used by)
ELSEWHERE: list[tuple[str, str, list[str] | None, str]] = [
    ("prefect.flow_engine", "observe_flow_run_suspension", None, "device_agent/worker.py"),
    ("prefect.client.base", "_parse_retry_after", ["value"], "fleet/core/_server_main.py"),
    (
        "prefect.server.api.server",
        "create_app",
        ["settings", "ephemeral", "webserver_only", "final", "ignore_cache"],
        "fleet/core/_server_main.py",
    ),
    ("prefect.context", "GLOBAL_SETTINGS_CONTEXT", None, "fleet/core/server.py"),
    (
        "prefect.events.clients",
        "get_events_subscriber",
        ["filter", "reconnection_attempts", "reconnect_on_clean_close"],
        "device_agent/worker.py, device_agent/agent.py",
    ),
]


def _where(name: str) -> str:
    return f"Prefect {prefect.__version__}: BaseWorker.{name} (used by device_agent/worker.py)"


def _params(fn: Any) -> list[str]:
    return list(inspect.signature(fn).parameters)


@pytest.mark.parametrize("name", sorted({**OVERRIDDEN, **CALLED}))
def test_base_worker_methods_keep_their_signatures(name: str) -> None:
    from prefect.workers.base import BaseWorker

    expected = {**OVERRIDDEN, **CALLED}[name]
    method = getattr(BaseWorker, name, None)
    assert method is not None, f"{_where(name)} is gone"
    assert _params(method) == expected, f"{_where(name)} now takes {_params(method)}"


def test_the_overrides_are_still_overrides() -> None:
    from prefect.workers.base import BaseWorker

    from device_agent.worker import ResortWorker

    for name in OVERRIDDEN:
        ours = ResortWorker.__dict__.get(name)
        assert ours is not None, f"ResortWorker no longer overrides {name}: update OVERRIDDEN"
        base = getattr(BaseWorker, name)
        assert inspect.iscoroutinefunction(ours) == inspect.iscoroutinefunction(base), (
            f"{_where(name)}: sync/async differs from the override"
        )


def test_base_worker_still_sets_the_attributes_read() -> None:
    from prefect.workers.base import BaseWorker

    source = inspect.getsource(BaseWorker)
    for name in ATTRIBUTES:
        assert f"self.{name} =" in source or f"self.{name}:" in source, (
            f"{_where(name)}: BaseWorker no longer sets it"
        )


def test_the_copied_submission_path_matches_upstream() -> None:
    from prefect.workers.base import BaseWorker

    digest = hashlib.sha256(inspect.getsource(BaseWorker._submit_run).encode()).hexdigest()[:16]
    assert digest == SUBMIT_RUN_SOURCE, (
        f"{_where('_submit_run')} changed upstream (source digest {digest}): merge the change "
        "into ResortWorker._submit_run, then update SUBMIT_RUN_SOURCE"
    )


@pytest.mark.parametrize(("module", "name", "params", "used_by"), ELSEWHERE)
def test_other_internal_names_are_where_we_use_them(
    module: str, name: str, params: list[str] | None, used_by: str
) -> None:
    target = getattr(importlib.import_module(module), name, None)
    where = f"Prefect {prefect.__version__}: {module}.{name} (used by {used_by})"
    assert target is not None, f"{where} is gone"
    if params is not None:
        assert _params(target) == params, f"{where} now takes {_params(target)}"


def test_the_flow_run_state_hybrid_still_lacks_a_bulk_dml_setter_or_has_ours() -> None:
    """`fleet.core._server_main.allow_scheduled_runs_on_sqlalchemy_21` sets it in place."""
    from prefect.server.database import orm_models

    hybrid = orm_models.FlowRun.__dict__.get("state")
    assert hybrid is not None and hasattr(hybrid, "bulk_dml_setter"), (
        f"Prefect {prefect.__version__}: FlowRun.state is no hybrid with a bulk_dml_setter "
        "(used by fleet/core/_server_main.py)"
    )
