"""The Prefect API as provisioning and draining use it: a sync client, failures as fleet errors."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from fleet.core.errors import FleetError, ProvisionError, ServerUnavailableError

if TYPE_CHECKING:
    from prefect.client.orchestration import SyncPrefectClient

__all__ = ["PAGE", "sync_client", "translated"]

#: objects read per request when listing queues, limits, deployments and runs
PAGE = 200


def sync_client() -> SyncPrefectClient:
    """A sync client of the Prefect API the current settings point at."""
    from prefect import get_client

    return get_client(sync_client=True)


def _wrap_errors(exc: Exception) -> Exception:
    """Turn Prefect/httpx failures into fleet errors (connection -> ServerUnavailableError)."""
    import httpx
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        return ServerUnavailableError(
            f"no Prefect server at {url}: start one with `fleet server up` or set PREFECT_API_URL"
        )
    if isinstance(exc, httpx.HTTPStatusError) and exc.response.status_code in (401, 403):
        return ServerUnavailableError(
            f"Prefect server at {url} answered HTTP {exc.response.status_code}: "
            "set FLEET_AUTH_FILE or PREFECT_API_AUTH_STRING"
        )
    if isinstance(exc, httpx.HTTPStatusError):
        try:
            reason = exc.response.json().get("detail") or exc.response.json()
        except ValueError:
            reason = exc.response.text
        return ProvisionError(
            f"Prefect server refused {exc.request.method} {exc.request.url.path}: "
            f"HTTP {exc.response.status_code}: {str(reason)[:300]}"
        )
    return ProvisionError(f"provisioning failed: {type(exc).__name__}: {str(exc)[:300]}")


@contextlib.contextmanager
def translated() -> Iterator[None]:
    """Re-raise Prefect and HTTP failures as fleet errors."""
    import httpx
    from prefect.exceptions import PrefectException

    try:
        yield
    except FleetError:
        raise
    except (OSError, PrefectException, httpx.HTTPError) as exc:
        raise _wrap_errors(exc) from exc
