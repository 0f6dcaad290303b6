"""Parameter JSON schemas of the device and parent flows, written by hand for their deployments.

`fleet` must not import `flows`, so provisioning cannot ask Prefect for the real flows' schemas.
These are kept equal to `prefect.utilities.callables.parameter_schema(flow)` of the flows in
`flows/device.py`, `flows/parent.py`, `flows/maintenance.py`, `flows/batch.py` and
`flows/plates.py` (descriptions
aside) by `tests/flows/test_flow_schemas.py`. The server validates run parameters against them
(`enforce_parameter_schema`), so a bad parameter fails when the run is created, not on the Pi.
"""

from __future__ import annotations

from typing import Any

__all__ = ["DEVICE_FLOW_SCHEMAS", "PARENT_FLOW_SCHEMAS", "schema_for"]

_REQUIRED = object()

_NUMBER = {"type": "number"}
_STRING = {"type": "string"}
_INTEGER = {"type": "integer"}
_BOOLEAN = {"type": "boolean"}
_OPT_NUMBER = {"anyOf": [{"type": "number"}, {"type": "null"}]}
_OPT_STRING = {"anyOf": [{"type": "string"}, {"type": "null"}]}
_OPT_OBJECT = {"anyOf": [{"additionalProperties": True, "type": "object"}, {"type": "null"}]}
_OPT_STRINGS = {"anyOf": [{"items": {"type": "string"}, "type": "array"}, {"type": "null"}]}
_OBJECTS = {"items": {"additionalProperties": True, "type": "object"}, "type": "array"}
_LOCK_TIMEOUT = 300.0
_HANDOFF_TIMEOUT = 600.0


def _schema(*params: tuple[str, dict[str, Any], Any]) -> dict[str, Any]:
    """A Prefect parameter schema from `(name, json type, default or _REQUIRED)` in order."""
    properties: dict[str, Any] = {}
    required: list[str] = []
    for position, (name, kind, default) in enumerate(params):
        prop: dict[str, Any] = {**kind, "position": position, "title": name}
        if default is _REQUIRED:
            required.append(name)
        else:
            prop["default"] = default
        properties[name] = prop
    schema: dict[str, Any] = {
        "title": "Parameters",
        "type": "object",
        "properties": properties,
        "definitions": {},
    }
    if required:
        schema["required"] = required
    return schema


#: Device subflow name -> parameter schema (keys equal `resort_common.names.DEVICE_FLOWS`).
_LEASE = ("lease", _OPT_STRING, None)  # the resort lock's lease id (names.LEASED_FLOWS)

DEVICE_FLOW_SCHEMAS: dict[str, dict[str, Any]] = {
    "activate-hotel": _schema(("hotel", _STRING, _REQUIRED), _LEASE),
    "go-home": _schema(_LEASE),
    "move-to-angle": _schema(("angle", _NUMBER, _REQUIRED), _LEASE),
    "set-speed": _schema(
        ("speed", _NUMBER, _REQUIRED), ("acceleration", _OPT_NUMBER, None), _LEASE
    ),
    "request-position": _schema(),
    "request-health": _schema(),
    "reboot-resort": _schema(_LEASE),
    "emergency-stop": _schema(("reason", _STRING, "emergency-stop flow run")),
    "move-sequence": _schema(
        ("moves", _OBJECTS, _REQUIRED),
        _LEASE,
        ("yield_first", _BOOLEAN, False),
        ("after", _OPT_STRING, None),
    ),
}

# Target of a parent flow: a named resort or a selector, the inventory file, the lock wait.
_TARGET = (
    ("resort", _OPT_STRING, None),
    ("selector", _OPT_OBJECT, None),
    ("inventory", _OPT_STRING, None),
    ("lock_timeout", _NUMBER, _LOCK_TIMEOUT),
)
_RESERVATION = ("reservation", _OPT_STRING, None)

#: Parent flow name -> parameter schema (keys equal `resort_common.names.PARENT_FLOWS`).
PARENT_FLOW_SCHEMAS: dict[str, dict[str, Any]] = {
    "fleet-activate-hotel": _schema(("hotel", _STRING, _REQUIRED), *_TARGET, _RESERVATION),
    "fleet-go-home": _schema(*_TARGET, _RESERVATION),
    "fleet-move-to-angle": _schema(("angle", _NUMBER, _REQUIRED), *_TARGET, _RESERVATION),
    "fleet-health": _schema(
        ("resorts", _OPT_STRINGS, None),
        ("inventory", _OPT_STRING, None),
        ("timeout", _NUMBER, 30.0),
    ),
    "fleet-recover": _schema(
        ("resort", _STRING, _REQUIRED),
        ("inventory", _OPT_STRING, None),
        ("lock_timeout", _NUMBER, _LOCK_TIMEOUT),
        _RESERVATION,
    ),
    "fleet-set-speed": _schema(
        ("resort", _STRING, _REQUIRED),
        ("speed", _NUMBER, _REQUIRED),
        ("acceleration", _OPT_NUMBER, None),
        ("inventory", _OPT_STRING, None),
        ("lock_timeout", _NUMBER, _LOCK_TIMEOUT),
        _RESERVATION,
    ),
    "fleet-reserve": _schema(("steps", _OBJECTS, _REQUIRED), *_TARGET),
    "fleet-batch": _schema(
        ("operations", _OBJECTS, _REQUIRED),
        ("inventory", _OPT_STRING, None),
        ("max_concurrency", _INTEGER, 8),
        ("fail_fast", _BOOLEAN, False),
        ("lock_timeout", _NUMBER, _LOCK_TIMEOUT),
    ),
    "fleet-store-plate": _schema(
        ("plate", _STRING, _REQUIRED),
        ("resort", _OPT_STRING, None),
        ("selector", _OPT_OBJECT, None),
        ("hotel", _OPT_STRING, None),
        ("labware", _OPT_STRING, None),
        ("owner", _OPT_STRING, None),
        ("timeout", _NUMBER, _HANDOFF_TIMEOUT),
        ("inventory", _OPT_STRING, None),
        ("lock_timeout", _NUMBER, _LOCK_TIMEOUT),
        _RESERVATION,
    ),
    "fleet-retrieve-plate": _schema(
        ("plate", _STRING, _REQUIRED),
        ("timeout", _NUMBER, _HANDOFF_TIMEOUT),
        ("inventory", _OPT_STRING, None),
        ("lock_timeout", _NUMBER, _LOCK_TIMEOUT),
        _RESERVATION,
    ),
}


def schema_for(flow_name: str) -> dict[str, Any] | None:
    """The hand-written schema of a device or parent flow, or None when it has none."""
    return DEVICE_FLOW_SCHEMAS.get(flow_name) or PARENT_FLOW_SCHEMAS.get(flow_name)
