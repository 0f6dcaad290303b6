"""Every private Prefect name this project relies on, with the signature it relies on.

A Prefect upgrade that moves one of them fails here, in one place, with a message that names what
moved and which module of ours uses it, instead of somewhere deep in an orchestration test (or,
for an override whose base method was renamed, nowhere: the override would just stop being
called). Update the table together with the module that uses the name. The device agent's
private names are pinned next to its adapter, in `tests/device_agent/test_prefect_adapter.py`.
"""

from __future__ import annotations

import prefect
import pytest

from tests.support.prefect_names import assert_internal_name

#: other private or internal names: (module, attribute, parameters or None, used by)
ELSEWHERE: list[tuple[str, str, list[str] | None, str]] = [
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
        "flows/waiting.py",
    ),
]


@pytest.mark.parametrize(("module", "name", "params", "used_by"), ELSEWHERE)
def test_other_internal_names_are_where_we_use_them(
    module: str, name: str, params: list[str] | None, used_by: str
) -> None:
    assert_internal_name(module, name, params, used_by)


def test_the_flow_run_state_hybrid_still_lacks_a_bulk_dml_setter_or_has_ours() -> None:
    """`fleet.core._server_main.allow_scheduled_runs_on_sqlalchemy_21` sets it in place."""
    from prefect.server.database import orm_models

    hybrid = orm_models.FlowRun.__dict__.get("state")
    assert hybrid is not None and hasattr(hybrid, "bulk_dml_setter"), (
        f"Prefect {prefect.__version__}: FlowRun.state is no hybrid with a bulk_dml_setter "
        "(used by fleet/core/_server_main.py)"
    )
