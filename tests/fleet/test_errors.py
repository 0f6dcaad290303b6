"""The error hierarchy: what each error is (and is not) to Prefect and to the CLI's exit codes."""

from __future__ import annotations

from fleet.cli import EXIT_BUSY, exit_code_for
from fleet.core.errors import DeviceBusyError, FleetError, LeaseError


def test_a_lease_refusal_is_not_a_timeout() -> None:
    # Prefect's flow engine turns a TimeoutError into a state named "TimedOut" ("failed due to
    # timeout"): a device run refused for a missing or stale lease must read as a plain failure.
    error = LeaseError("lease x does not hold lock resort:a")
    assert not isinstance(error, TimeoutError)
    assert isinstance(error, PermissionError) and isinstance(error, FleetError)


def test_a_lease_refusal_exits_busy_like_a_lock_timeout() -> None:
    assert exit_code_for(LeaseError("gone")) == EXIT_BUSY
    assert exit_code_for(DeviceBusyError("busy")) == EXIT_BUSY
