"""The fleet's Prefect server: the embedded local one (up/down/status) and API URL resolution.

`fleet server up` starts `prefect server start` detached, on a free loopback port, with SQLite and
its own `PREFECT_HOME` under the project state directory (`.fleet-state/server`, or
`$FLEET_STATE_DIR/server`, or `--state-dir DIR/server`), waits until `/api/health` answers and
records pid, URL and log file in `server.json` next to it.

Every `fleet` command talks to the API found by `resolve_api()`: `PREFECT_API_URL` if set, else
the inventory's `fleet.api_url`, else the recorded local server. A shared server that requires
Prefect's basic-auth string gets it from `PREFECT_API_AUTH_STRING`, or from the file named by
`FLEET_AUTH_FILE`, or from the auth file the local server was started with. `api_settings()`
applies the result to Prefect's settings (and to `os.environ`, so child processes inherit it) and
raises `ServerUnavailableError` when nothing answers.

Pitfalls handled here (see /work/shared/reference/prefect.md §4, §5): the server runs with
filesystem lease storage (the default in-memory storage leaks concurrency slots for good on a
restart) and a 1 s cap on the slot-wait hint (waiters are not woken when a slot frees).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import logging
import os
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from fleet.core.errors import ServerError, ServerUnavailableError

__all__ = [
    "ENV_AUTH_FILE",
    "ENV_STATE_DIR",
    "ApiTarget",
    "ServerInfo",
    "api_settings",
    "check_api",
    "flush_prefect_clients",
    "free_port",
    "prefect_environment",
    "read_auth_file",
    "resolve_api",
    "server_dir",
    "server_down",
    "server_env",
    "server_home",
    "server_status",
    "server_up",
    "start_server_process",
    "state_dir",
    "wait_healthy",
]

logger = logging.getLogger(__name__)

ENV_STATE_DIR = "FLEET_STATE_DIR"
ENV_AUTH_FILE = "FLEET_AUTH_FILE"
DEFAULT_STATE_DIR = ".fleet-state"
STATE_FILE = "server.json"
LOG_FILE = "server.log"
LEASE_STORAGE = "prefect.server.concurrency.lease_storage.filesystem"

_UNAVAILABLE_HINT = "start one with `fleet server up` or set PREFECT_API_URL"


# --------------------------------------------------------------------------- state directory


def state_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The project state directory: `explicit`, else `$FLEET_STATE_DIR`, else `./.fleet-state`."""
    if explicit:
        return Path(explicit).expanduser().resolve()
    env = os.environ.get(ENV_STATE_DIR)
    if env:
        return Path(env).expanduser().resolve()
    return (Path.cwd() / DEFAULT_STATE_DIR).resolve()


def server_dir(state: str | os.PathLike[str] | None = None) -> Path:
    """Directory of the local server (home, database, log, `server.json`): `<state>/server`."""
    return state_dir(state) / "server"


def server_home(state: str | os.PathLike[str] | None = None) -> Path:
    """The local server's `PREFECT_HOME` (its SQLite database, lease storage)."""
    return server_dir(state) / "home"


@dataclass(frozen=True)
class ServerInfo:
    """What `server.json` records about a started local server.

    Attributes:
        pid: process id of `prefect server start` (leader of its own process group).
        create_time: the process's start time (psutil), to recognise a reused pid.
        api_url: `http://127.0.0.1:PORT/api`.
        ui_url: the UI's URL, or None when started with the UI off.
        port: the loopback TCP port.
        home: the server's `PREFECT_HOME` (SQLite database, lease storage).
        log_path: where the server's stdout and stderr go.
        database: "sqlite" or the database URL with its password masked.
        auth_file: the file holding the server's auth string, if it requires one.
        started_at: Unix time when `up` started it.
    """

    pid: int
    create_time: float
    api_url: str
    ui_url: str | None
    port: int
    home: str
    log_path: str
    database: str
    auth_file: str | None
    started_at: float

    @classmethod
    def load(cls, path: Path) -> ServerInfo | None:
        """Read a `server.json`; None when missing or unreadable."""
        try:
            data = json.loads(path.read_text())
            return cls(**{k: data.get(k) for k in cls.__dataclass_fields__})
        except (OSError, ValueError, TypeError, AttributeError):
            return None

    def save(self, path: Path) -> None:
        """Write atomically (temp file + rename)."""
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        tmp.replace(path)

    def process_alive(self) -> bool:
        """True when the recorded process still runs and is the same process (not a reused pid)."""
        import psutil

        if not isinstance(self.pid, int) or not isinstance(self.create_time, int | float):
            return False
        try:
            proc = psutil.Process(self.pid)
            if abs(proc.create_time() - self.create_time) > 1.0:
                return False
            return proc.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False


# --------------------------------------------------------------------------- credentials


def read_auth_file(path: str | os.PathLike[str]) -> str:
    """Read a Prefect auth string (`user:password`) from a file only its owner may read.

    Raises:
        ServerError: the file is missing, empty, or readable by group or others.
    """
    p = Path(path).expanduser()
    try:
        mode = p.stat().st_mode
        text = p.read_text().strip()
    except OSError as exc:
        raise ServerError(f"auth file {p}: cannot read it ({exc.strerror})") from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ServerError(f"auth file {p}: mode {stat.S_IMODE(mode):04o}, must be 0600 (chmod 600)")
    if not text:
        raise ServerError(f"auth file {p}: empty; it must hold the auth string (user:password)")
    return text


def _client_auth_string(recorded: ServerInfo | None) -> str | None:
    if os.environ.get("PREFECT_API_AUTH_STRING"):
        return os.environ["PREFECT_API_AUTH_STRING"]
    if os.environ.get(ENV_AUTH_FILE):
        return read_auth_file(os.environ[ENV_AUTH_FILE])
    if recorded is not None and recorded.auth_file:
        return read_auth_file(recorded.auth_file)
    return None


# --------------------------------------------------------------------------- low-level start


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_env(
    home: Path,
    port: int,
    database_url: str | None = None,
    *,
    auth_string: str | None = None,
    ui: bool = False,
    base_env: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Environment for a fleet Prefect server process (and for clients in the same env).

    Own `PREFECT_HOME`, loopback only, filesystem lease storage, 1 s slot-wait cap, analytics off.
    """
    env = dict(os.environ if base_env is None else base_env)
    for key in (
        "PREFECT_API_AUTH_STRING",
        "PREFECT_SERVER_API_AUTH_STRING",
        "PREFECT_PROFILE",
        "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL",  # quiet CLI console; the server log is wanted
    ):
        env.pop(key, None)
    env.update(
        {
            "PREFECT_HOME": str(home),
            "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
            "PREFECT_SERVER_API_HOST": "127.0.0.1",
            "PREFECT_SERVER_API_PORT": str(port),
            "PREFECT_SERVER_UI_ENABLED": "true" if ui else "false",
            "PREFECT_UI_ENABLED": "true" if ui else "false",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE": LEASE_STORAGE,
            "PREFECT_SERVER_CONCURRENCY_MAXIMUM_CONCURRENCY_SLOT_WAIT_SECONDS": "1",
            "PREFECT_LOGGING_LEVEL": "WARNING",
        }
    )
    if database_url:
        env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = database_url
    if auth_string:
        env["PREFECT_SERVER_API_AUTH_STRING"] = auth_string
        env["PREFECT_API_AUTH_STRING"] = auth_string
    return env


def start_server_process(env: Mapping[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """Start Prefect's server (`fleet.core._server_main`) detached, output to `log_path`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "fleet.core._server_main"],
            env=dict(env),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def _health(api_url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{api_url.rstrip('/')}/health", timeout=timeout) as r:
            return bool(r.status == 200)
    except (OSError, ValueError):
        return False


def _log_tail(log_path: Path, lines: int = 5) -> str:
    try:
        tail = log_path.read_text(errors="replace").strip().splitlines()[-lines:]
    except OSError:
        return ""
    return " | ".join(line.strip() for line in tail if line.strip())


def wait_healthy(
    api_url: str, process: subprocess.Popen[bytes], log_path: Path, timeout: float = 90.0
) -> None:
    """Wait until `api_url/health` answers 200.

    Raises:
        ServerError: the process exited first or the timeout passed (the process is killed).
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServerError(
                f"prefect server exited with {process.returncode}; see {log_path}: "
                f"{_log_tail(log_path)}"
            )
        if _health(api_url):
            return
        time.sleep(0.3)
    _kill_group(process.pid, signal.SIGKILL)
    raise ServerError(f"prefect server did not become healthy in {timeout:g} s; see {log_path}")


def _kill_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _mask(url: str) -> str:
    """Mask the password of a database URL."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in creds else url


# --------------------------------------------------------------------------- up / down / status


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / ".lock").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def server_status(state: str | os.PathLike[str] | None = None) -> ServerInfo | None:
    """The recorded local server if its process runs and `/api/health` answers, else None."""
    info = ServerInfo.load(server_dir(state) / STATE_FILE)
    if info is None or not info.process_alive() or not _health(info.api_url):
        return None
    return info


def server_up(
    state: str | os.PathLike[str] | None = None,
    *,
    port: int | None = None,
    ui: bool = True,
    auth_file: str | os.PathLike[str] | None = None,
    database_url: str | None = None,
    timeout: float = 90.0,
) -> tuple[ServerInfo, bool]:
    """Start the local server unless it already runs.

    Args:
        state: project state directory (default: see `state_dir`).
        port: loopback port (default: a free one).
        ui: serve the Prefect UI too.
        auth_file: file (mode 0600) holding an auth string the server will require.
        database_url: PostgreSQL URL (`postgresql+asyncpg://...`) instead of SQLite.
        timeout: seconds to wait for `/api/health`.

    Returns:
        The server's record and whether this call started it (False: it was already running).

    Raises:
        ServerError: it did not start (the message names the log file).
    """
    directory = server_dir(state)
    with _locked(directory):
        running = server_status(state)
        if running is not None:
            return running, False
        old = ServerInfo.load(directory / STATE_FILE)
        if old is not None and old.process_alive():
            # Alive but not answering: a hung server. Replace it.
            logger.warning("server pid %s does not answer; stopping it", old.pid)
            _stop(old, 10.0)
        auth_path = Path(auth_file).expanduser().resolve() if auth_file else None
        auth_string = read_auth_file(auth_path) if auth_path else None
        port = port or free_port()
        home = server_home(state)
        home.mkdir(parents=True, exist_ok=True)
        log_path = directory / LOG_FILE
        env = server_env(home, port, database_url, auth_string=auth_string, ui=ui)
        logger.info("starting prefect server on port %s (log %s)", port, log_path)
        proc = start_server_process(env, log_path)
        try:
            wait_healthy(env["PREFECT_API_URL"], proc, log_path, timeout)
        except ServerError:
            _kill_group(proc.pid, signal.SIGKILL)
            proc.wait(5)
            raise
        import psutil

        info = ServerInfo(
            pid=proc.pid,
            create_time=psutil.Process(proc.pid).create_time(),
            api_url=env["PREFECT_API_URL"],
            ui_url=f"http://127.0.0.1:{port}" if ui else None,
            port=port,
            home=str(home),
            log_path=str(log_path),
            database=_mask(database_url) if database_url else "sqlite",
            auth_file=str(auth_path) if auth_path else None,
            started_at=time.time(),
        )
        info.save(directory / STATE_FILE)
        return info, True


def _stop(info: ServerInfo, timeout: float) -> None:
    import psutil

    if not info.process_alive():
        return
    _kill_group(info.pid, signal.SIGTERM)
    try:
        psutil.Process(info.pid).wait(timeout)
    except psutil.TimeoutExpired:
        _kill_group(info.pid, signal.SIGKILL)
        with contextlib.suppress(psutil.Error):
            psutil.Process(info.pid).wait(5)
    except psutil.Error:
        pass


def flush_prefect_clients(timeout: float = 10.0) -> None:
    """Send this process's queued Prefect logs and events now, while the server still answers.

    Call before stopping a server this process talked to (flows run in-process ship their logs
    in the background): otherwise the interpreter's exit waits on those sends, each retried
    against the dead server for about a minute ("Error logging to API").
    """
    import sys

    if "prefect" not in sys.modules:
        return
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for service in (APILogWorker, EventsWorker):
        try:
            service.drain_all(timeout=timeout)
        except Exception as exc:  # flushing is best effort; stopping must go on
            logger.debug("flushing %s failed: %s", service.__name__, exc)


def server_down(
    state: str | os.PathLike[str] | None = None, *, timeout: float = 15.0
) -> ServerInfo | None:
    """Stop the recorded local server (SIGTERM to its group, SIGKILL after `timeout`).

    Queued logs and events of this process are flushed to it first.

    Returns:
        The record of the server that was stopped, or None when none was running.
    """
    flush_prefect_clients()
    directory = server_dir(state)
    with _locked(directory):
        info = ServerInfo.load(directory / STATE_FILE)
        if info is None:
            return None
        alive = info.process_alive()
        _stop(info, timeout)
        (directory / STATE_FILE).unlink(missing_ok=True)
        return info if alive else None


# --------------------------------------------------------------------------- API resolution


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
    auth = _client_auth_string(recorded if same_server else None)
    return ApiTarget(url.rstrip("/"), auth, source)


def check_api(url: str, auth_string: str | None = None, timeout: float = 5.0) -> None:
    """Check that a Prefect API answers at `url` and accepts our credentials.

    Raises:
        ServerUnavailableError: nothing answers, or the server refuses the credentials.
    """
    if not _health(url, timeout):
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


@contextlib.contextmanager
def prefect_environment(updates: Mapping[str, str]) -> Iterator[None]:
    """Set Prefect environment variables for the enclosed block, process-wide, then restore.

    Prefect snapshots the environment into its global settings when first imported; threads that
    do not copy the caller's context (event and log workers, lease renewal) read that snapshot,
    so it is re-read here and the previous one put back on exit.
    """
    import prefect.context

    saved = {k: os.environ.get(k) for k in updates}
    saved_global = prefect.context.GLOBAL_SETTINGS_CONTEXT
    os.environ.update(updates)
    try:
        prefect.context.refresh_global_settings_context()
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        prefect.context.GLOBAL_SETTINGS_CONTEXT = saved_global
