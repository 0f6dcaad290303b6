"""The single-resort verbs of the scheduler API, each defined once, and the forms derived from it.

Each verb is a stub under `@define_verb`: the stub's name, signature (the resort first; a
`selector` when one may choose the resort) and docstring are the verb's, the decorator names the
parent flow it runs (`resort_common.names.PARENT_FLOWS`), how a request is validated against the
inventory and the reservation form's docstring. `client_method` and `reservation_method` build
the async methods of `AsyncFleetClient` and `Reservation` from a `Verb` (with its signature, for
`help()` and IDEs); the blocking classes wrap those (`fleet.client.blocking`).
"""

# The verb stubs below are signatures and docstrings only; they are never called.
# mypy: disable-error-code="empty-body"

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fleet.core.errors import PlanError
from fleet.core.plan import known_resort, validate_speed
from fleet.core.selection import Selector
from resort_common import names

if TYPE_CHECKING:
    from fleet.core.inventory import Inventory

__all__ = [
    "VERBS",
    "SelectorLike",
    "Verb",
    "activate_hotel",
    "client_method",
    "define_verb",
    "go_home",
    "move_to_angle",
    "recover",
    "reservation_method",
    "selector_dict",
    "set_speed",
    "verb_named",
]

SelectorLike = Selector | Mapping[str, Any]

#: validates one request: (inventory, resort, selector dict, the verb's arguments) -> None
Check = Callable[[Any, str | None, dict[str, Any] | None, dict[str, Any]], None]

_POSITIONAL = inspect.Parameter.POSITIONAL_OR_KEYWORD


def selector_dict(selector: SelectorLike | None) -> dict[str, Any] | None:
    """The JSON form of a selector, as the parent flows take it."""
    if selector is None:
        return None
    if isinstance(selector, Selector):
        return selector.model_dump(mode="json")
    return dict(selector)


@dataclass(frozen=True)
class Verb:
    """One single-resort verb: the one definition its async, blocking and reservation forms share.

    Made by `@define_verb(...)` from a stub whose signature (the resort first) and docstring are the
    verb's.

    Attributes:
        name: the method name (`activate_hotel`), also the `call` of `AsyncFleetClient.validate`.
        flow: the parent flow it runs, a key of `names.PARENT_FLOWS`.
        check: validates a request against the inventory (raises `PlanError`).
        signature: the client form's signature without `self`: `resort`, the verb's own
            parameters, and `selector` (keyword-only) when a selector may choose the resort.
        doc: the docstring of the client forms.
        reserved_doc: the docstring of the reservation forms (the resort is the reserved one).
    """

    name: str
    flow: str
    check: Check
    signature: inspect.Signature
    doc: str
    reserved_doc: str

    @property
    def selectable(self) -> bool:
        """A selector may choose the resort (which is then None)."""
        return "selector" in self.signature.parameters

    @property
    def params(self) -> list[inspect.Parameter]:
        """The verb's own parameters, after the resort."""
        return [p for n, p in self.signature.parameters.items() if n not in ("resort", "selector")]

    def arguments(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """The verb's arguments by name, defaults filled in (TypeError for a wrong call)."""
        bound = inspect.Signature(self.params).bind(*args, **kwargs)
        bound.apply_defaults()
        return dict(bound.arguments)

    def parent_flow(self) -> Callable[..., Any]:
        """The parent flow function, loaded from its entrypoint."""
        module, attr = names.PARENT_FLOWS[self.flow].split(":")
        flow: Callable[..., Any] = getattr(importlib.import_module(module), attr)
        return flow

    def method_signature(self, *, reserved: bool) -> inspect.Signature:
        """The signature of the client form, or of the reservation form (no resort, no selector)."""
        params = self.params if reserved else list(self.signature.parameters.values())
        return self.signature.replace(parameters=[inspect.Parameter("self", _POSITIONAL), *params])


def define_verb(
    flow: str, reserved_doc: str, check: Check | None = None
) -> Callable[[Callable[..., Any]], Verb]:
    """Make a `Verb` of the decorated stub (its name, signature and docstring) running `flow`.

    `check` defaults to the validation of a motion: the plan operation of the same name.
    """

    def define(stub: Callable[..., Any]) -> Verb:
        return Verb(
            name=stub.__name__,
            flow=flow,
            check=check or _check_motion(stub.__name__),
            signature=inspect.signature(stub),
            doc=inspect.getdoc(stub) or "",
            reserved_doc=reserved_doc,
        )

    return define


def _check_motion(action: str) -> Check:
    def check(
        inventory: Inventory, resort: str | None, selector: Any, args: dict[str, Any]
    ) -> None:
        from flows.requests import make_operation, validate_request

        validate_request(inventory, make_operation(action, resort, selector, **args))

    return check


def _check_speed(inventory: Inventory, resort: str | None, _: Any, args: dict[str, Any]) -> None:
    validate_speed(inventory, str(resort), args["speed"], args["acceleration"])


def _check_recover(inventory: Inventory, resort: str | None, _: Any, __: dict[str, Any]) -> None:
    known_resort(inventory, str(resort))


# --- the verbs: each stub's signature and docstring are the verb's ------------------------------


@define_verb("fleet-activate-hotel", "Activate `hotel` on the reserved resort.")
def activate_hotel(
    resort: str | None, hotel: str, *, selector: SelectorLike | None = None
) -> dict[str, Any]:
    """Bring `hotel` to the access position on `resort` (or a resort chosen by `selector`)."""


@define_verb("fleet-go-home", "Send the reserved resort home.")
def go_home(resort: str | None, *, selector: SelectorLike | None = None) -> dict[str, Any]:
    """Turn `resort` (or one chosen by `selector`) to its home angle."""


@define_verb("fleet-move-to-angle", "Turn the reserved resort to `angle` degrees.")
def move_to_angle(
    resort: str | None, angle: float, *, selector: SelectorLike | None = None
) -> dict[str, Any]:
    """Turn `resort` (or one chosen by `selector`) to `angle` degrees, 0 <= angle < 360."""


@define_verb(
    "fleet-set-speed",
    "Set the reserved resort's speed (deg/s) and optionally acceleration (deg/s^2).",
    check=_check_speed,
)
def set_speed(resort: str, speed: float, acceleration: float | None = None) -> dict[str, Any]:
    """Set `resort`'s speed (deg/s) and optionally acceleration (deg/s^2) for later moves.

    Lasts until the resort's agent restarts (the inventory's values are the default).

    Raises:
        PlanError: out of range, or too slow for a full turn within the move timeout.
    """


@define_verb(
    "fleet-recover",
    "Reboot the reserved resort's servo (clears latched hardware errors).",
    check=_check_recover,
)
def recover(resort: str) -> dict[str, Any]:
    """Reboot `resort`'s servo under its lock (clears a latched overload, overheating, ...).

    Returns:
        The health after the reboot (`ok`, `hardware_errors`, temperature, voltage, ...).

    Raises:
        DeviceSelectionError: unknown, inactive, offline, drained or e-stopped resort.
    """


VERBS: tuple[Verb, ...] = (activate_hotel, go_home, move_to_angle, set_speed, recover)


def verb_named(call: str) -> Verb:
    """The verb called `call` (PlanError for an unknown one)."""
    for candidate in VERBS:
        if candidate.name == call:
            return candidate
    raise PlanError(f"call: unknown request {call!r}")


def _method(
    verb: Verb,
    reserved: bool,
    run: Callable[[Any, dict[str, Any]], Any],
) -> Callable[..., Any]:
    """An async method with `verb`'s signature that awaits `run(self, arguments by name)`."""
    signature = verb.method_signature(reserved=reserved)

    async def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        values = dict(bound.arguments)
        del values["self"]
        return await run(self, values)

    method.__name__ = method.__qualname__ = verb.name
    method.__doc__ = verb.reserved_doc if reserved else verb.doc
    method.__signature__ = signature  # type: ignore[attr-defined]
    return method


def client_method(verb: Verb) -> Callable[..., Any]:
    """`AsyncFleetClient.<verb>(resort, *args, selector=None)`: runs `AsyncFleetClient.run`."""

    def run(client: Any, values: dict[str, Any]) -> Any:
        resort = values.pop("resort")
        return client.run(verb, resort, values, selector=values.pop("selector", None))

    return _method(verb, False, run)


def reservation_method(verb: Verb) -> Callable[..., Any]:
    """`Reservation.<verb>(*args)`: the client form on the reserved resort."""

    def run(reservation: Any, values: dict[str, Any]) -> Any:
        return reservation.client.run(verb, reservation.resort, values)

    return _method(verb, True, run)
