"""Which Prefect API a `fleet` command talks to (`resolve_api`), and pointing Prefect at it.

`resolve_api()` takes `PREFECT_API_URL` if set, else the inventory's `fleet.api_url`, else the
recorded local server. A shared server that requires Prefect's basic-auth string gets it from
`PREFECT_API_AUTH_STRING`, or from the file named by `FLEET_AUTH_FILE`, or from the auth file the
local server was started with. `api_settings()` applies the result to Prefect's settings (and to
`os.environ`, so child processes inherit it) and raises `ServerUnavailableError` when nothing
answers.
"""

from __future__ import annotations

import base64
import contextlib
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from fleet.core.errors import ServerUnavailableError
from fleet.core.server.auth import client_auth_string
from fleet.core.server.environment import prefect_environment
from fleet.core.server.process import health
from fleet.core.server.state import STATE_FILE, ServerInfo, server_dir

__all__ = ["ApiTarget", "api_settings", "check_api", "resolve_api"]

_UNAVAILABLE_HINT = "start one with `fleet server up` or set PREFECT_API_URL"


@dataclass(frozen=True)
class ApiTarget:
    """The API a `fleet` command talks to.

    Attributes:
        url: the Prefect API URL (ends in `/api`).
        auth_string: basic-auth string for a server that requires one, else None.
        source: where the URL came from: "PREFECT_API_URL", "inventory" or "local server".
    """

    url: str
    auth_string: str | None
    source: str


def resolve_api(inv: Any = None, *, state: str | os.PathLike[str] | None = None) -> ApiTarget:
    """Find the API: `PREFECT_API_URL`, else `inv.fleet.api_url`, else the local server's record.

    Raises:
        ServerUnavailableError: none of the three names a server.
        ServerError: an auth file is unreadable or not private.
    """
    recorded = ServerInfo.load(server_dir(state) / STATE_FILE)
    env_url = os.environ.get("PREFECT_API_URL")
    inv_url = getattr(getattr(inv, "fleet", None), "api_url", None) if inv is not None else None
    if env_url:
        url, source = env_url, "PREFECT_API_URL"
    elif inv_url:
        url, source = str(inv_url), "inventory"
    elif recorded is not None:
        url, source = recorded.api_url, "local server"
    else:
        raise ServerUnavailableError(f"no Prefect server configured: {_UNAVAILABLE_HINT}")
    same_server = recorded is not None and recorded.api_url.rstrip("/") == url.rstrip("/")
    auth = client_auth_string(recorded if same_server else None)
    return ApiTarget(url.rstrip("/"), auth, source)


def check_api(url: str, auth_string: str | None = None, timeout: float = 5.0) -> None:
    """Check that a Prefect API answers at `url` and accepts our credentials.

    Raises:
        ServerUnavailableError: nothing answers, or the server refuses the credentials.
    """
    if not health(url, timeout):
        raise ServerUnavailableError(f"no Prefect server at {url}: {_UNAVAILABLE_HINT}")
    request = urllib.request.Request(f"{url.rstrip('/')}/admin/version")
    if auth_string:
        token = base64.b64encode(auth_string.encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout):
            return
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 403):
            how = "was refused" if auth_string else "is required"
            raise ServerUnavailableError(
                f"Prefect server at {url} answered HTTP {exc.code}: its auth string {how}; "
                f"set FLEET_AUTH_FILE or PREFECT_API_AUTH_STRING"
            ) from exc
        raise ServerUnavailableError(f"Prefect server at {url} answered HTTP {exc.code}") from exc
    except OSError as exc:
        raise ServerUnavailableError(f"no Prefect server at {url}: {_UNAVAILABLE_HINT}") from exc


@contextlib.contextmanager
def api_settings(
    inv: Any = None, *, state: str | os.PathLike[str] | None = None, check: bool = True
) -> Iterator[ApiTarget]:
    """Point Prefect (settings and `os.environ`) at the fleet's API for the enclosed block.

    Args:
        inv: the inventory (its `fleet.api_url` is the second choice), or None.
        state: project state directory holding the local server's record.
        check: verify first that the server answers and accepts our credentials.

    Yields:
        The resolved `ApiTarget`.

    Raises:
        ServerUnavailableError: no server answers (one line naming the URL and the fix).
    """
    target = resolve_api(inv, state=state)
    if check:
        check_api(target.url, target.auth_string)
    updates = {"PREFECT_API_URL": target.url}
    if target.auth_string:
        updates["PREFECT_API_AUTH_STRING"] = target.auth_string
    from prefect.settings import temporary_settings

    with prefect_environment(updates):
        settings: dict[str, Any] = {"api.url": target.url}
        if target.auth_string:
            settings["api.auth_string"] = target.auth_string
        with temporary_settings(updates=settings):
            yield target
