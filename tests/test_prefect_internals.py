"""Private Prefect names used outside the three packages' adapters, with the signature relied on.

A Prefect upgrade that moves one of them fails here, in one place, with a message that names what
moved and which module of ours uses it. Each package's own adapter is pinned next to it:
`tests/device_agent/test_prefect_adapter.py`, `tests/fleet/test_prefect_adapter.py` and
`tests/flows/test_prefect_adapter.py`.
"""

from __future__ import annotations

import pytest

from tests.support.prefect_names import assert_internal_name

#: other private or internal names: (module, attribute, parameters or None, used by)
ELSEWHERE: list[tuple[str, str, list[str] | None, str]] = [
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
