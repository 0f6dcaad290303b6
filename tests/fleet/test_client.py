"""`fleet.client`: each verb defined once, its four forms derived from it, requests validated
against the inventory before any server is asked."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import pytest

from fleet.client import AsyncFleetClient, FleetClient, Reservation, SyncReservation
from fleet.client.verbs import VERBS, verb_named
from fleet.core.errors import PlanError
from resort_common import names
from tests.support.inventories import write_inventory

#: parameters every single-resort parent flow takes besides the verb's own
FLOW_ONLY = {"inventory", "lock_timeout", "reservation"}


@pytest.fixture
def client(tmp_path: Path) -> FleetClient:
    return FleetClient(write_inventory(tmp_path / "inv.yaml", "cl", ["cl-a", "cl-b"]))


@pytest.mark.parametrize("verb", VERBS, ids=[v.name for v in VERBS])
def test_each_verb_has_all_four_forms_with_its_signature(verb) -> None:
    full = list(verb.signature.parameters)
    reserved = [p.name for p in verb.params]
    for cls, params, is_async in (
        (AsyncFleetClient, full, True),
        (FleetClient, full, False),
        (Reservation, reserved, True),
        (SyncReservation, reserved, False),
    ):
        method = getattr(cls, verb.name)
        assert list(inspect.signature(method).parameters) == ["self", *params], cls
        assert inspect.iscoroutinefunction(method) is is_async, cls
        assert method.__doc__, cls


@pytest.mark.parametrize("verb", VERBS, ids=[v.name for v in VERBS])
def test_each_verb_runs_a_parent_flow_that_takes_its_parameters(verb) -> None:
    module, attr = names.PARENT_FLOWS[verb.flow].split(":")
    flow = getattr(importlib.import_module(module), attr)
    assert verb.parent_flow() is flow
    assert flow.name == verb.flow
    assert set(inspect.signature(flow.fn).parameters) == set(verb.signature.parameters) | FLOW_ONLY


def test_the_blocking_client_has_every_public_async_method() -> None:
    public = {
        name
        for name, _ in inspect.getmembers(AsyncFleetClient, inspect.iscoroutinefunction)
        if not name.startswith("_")
    }
    assert public <= set(vars(FleetClient))
    assert inspect.signature(FleetClient.batch) == inspect.signature(AsyncFleetClient.batch)


@pytest.mark.parametrize(
    ("call", "args", "message"),
    [
        ("activate_hotel", ("cl-a", "Z"), "hotel"),
        ("move_to_angle", ("cl-a", 400.0), "angle 400"),
        ("go_home", ("nope",), "unknown resort 'nope'"),
        ("recover", ("nope",), "unknown resort 'nope'"),
        ("set_speed", ("cl-a", 1e9), "speed"),
        ("spin", ("cl-a",), "unknown request 'spin'"),
    ],
)
def test_a_bad_request_is_refused_before_any_server_is_asked(client, call, args, message) -> None:
    with pytest.raises(PlanError, match=message):
        client.validate(call, *args)
    if call != "spin":
        with pytest.raises(PlanError, match=message):
            getattr(client, call)(*args)


def test_good_requests_pass_validation(client) -> None:
    client.validate("activate_hotel", "cl-a", "B")
    client.validate("go_home", None, selector={"hotel": "B"})
    client.validate("set_speed", "cl-b", 30.0)
    client.validate("set_speed", "cl-b", 30.0, 100.0)
    client.validate("recover", "cl-a")
    with pytest.raises(TypeError):
        verb_named("activate_hotel").arguments()
