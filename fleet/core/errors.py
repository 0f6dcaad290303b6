"""Every error the fleet control plane raises: one root, subclasses that are also builtins."""

from __future__ import annotations

__all__ = [
    "DeviceBusyError",
    "DeviceSelectionError",
    "DispatchError",
    "EstopError",
    "FleetError",
    "InventoryError",
    "LeaseError",
    "PlanError",
    "PlateError",
    "ProvisionError",
    "RegistryUnavailableError",
    "ServerError",
    "ServerUnavailableError",
]


class FleetError(Exception):
    """Root of every error raised by the `fleet` package."""


class InventoryError(FleetError, ValueError):
    """The inventory file is unreadable or invalid.

    Attributes:
        problems: one line per problem, each naming file, line, key path and reason.
    """

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class PlateError(FleetError, ValueError):
    """A plate registry request is invalid or does not fit the registry's state (unknown or
    duplicate plate, full resort or hotel, no such room, no hand-off in progress); nothing changed.
    """


class RegistryUnavailableError(FleetError, ConnectionError):
    """The plate registry's database cannot be reached or is not migrated to this version."""


class PlanError(FleetError, ValueError):
    """A batch plan or a flow parameter is invalid; nothing was queued."""

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


class DeviceSelectionError(FleetError, LookupError):
    """No resort fits the request (unknown, inactive, offline, e-stopped or faulted)."""


class DeviceBusyError(FleetError, TimeoutError):
    """The resort's lock was not free before the timeout."""


class DispatchError(FleetError, RuntimeError):
    """A device subflow run did not complete; carries the child run's id and state.

    `run_url` is the run's page in the Prefect UI, where its logs are; the CLI fills it in and
    prints it under the error.
    """

    def __init__(
        self,
        message: str,
        *,
        flow_run_id: str | None = None,
        state: str | None = None,
        run_url: str | None = None,
    ):
        self.flow_run_id = flow_run_id
        self.state = state
        self.run_url = run_url
        super().__init__(message)


class LeaseError(FleetError, PermissionError):
    """A run's lease of a resort lock is missing, gone, or not the resort's current holder:
    the motor was not touched.

    Not a `TimeoutError` (as `DeviceBusyError` is): Prefect's engine names a flow run that raised
    a `TimeoutError` "TimedOut" with "failed due to timeout", which a refused run is not."""


class EstopError(FleetError, RuntimeError):
    """An emergency stop (or its clearing) was not acknowledged by the resort's agent."""


class ProvisionError(FleetError, RuntimeError):
    """Provisioning of pools, queues, limits or deployments failed."""


class ServerError(FleetError, RuntimeError):
    """The local Prefect server could not be started, stopped or queried."""


class ServerUnavailableError(ServerError, ConnectionError):
    """No Prefect server answers at the configured API URL."""
