"""The hand-written deployment schemas (`fleet.core.flow_schemas`) match the flows' signatures."""

from __future__ import annotations

import importlib
from typing import Any

import pytest
from prefect.utilities.callables import parameter_schema

from fleet.core.flow_schemas import DEVICE_FLOW_SCHEMAS, PARENT_FLOW_SCHEMAS
from resort_common import names


def _load(entrypoint: str) -> Any:
    module, attr = entrypoint.split(":")
    return getattr(importlib.import_module(module), attr)


def _without_descriptions(schema: dict[str, Any]) -> dict[str, Any]:
    """Docstring text may change freely; names, types, defaults, order and required may not."""
    out = {k: v for k, v in schema.items() if k != "definitions"}
    out["properties"] = {
        name: {k: v for k, v in prop.items() if k != "description"}
        for name, prop in schema.get("properties", {}).items()
    }
    out.setdefault("required", [])
    return out


def test_every_flow_has_a_schema():
    assert set(DEVICE_FLOW_SCHEMAS) == set(names.DEVICE_FLOWS)
    assert set(PARENT_FLOW_SCHEMAS) == set(names.PARENT_FLOWS)


@pytest.mark.parametrize(
    ("flow_name", "entrypoint", "schema"),
    [(f, e, DEVICE_FLOW_SCHEMAS[f]) for f, e in names.DEVICE_FLOWS.items()]
    + [(f, e, PARENT_FLOW_SCHEMAS[f]) for f, e in names.PARENT_FLOWS.items()],
    ids=[*names.DEVICE_FLOWS, *names.PARENT_FLOWS],
)
def test_schema_matches_the_flow(flow_name: str, entrypoint: str, schema: dict[str, Any]):
    flow = _load(entrypoint)
    assert flow.name == flow_name
    real = parameter_schema(flow).model_dump(exclude_unset=True)
    assert _without_descriptions(schema) == _without_descriptions(real)
