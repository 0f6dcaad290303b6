"""`fleet server up|down|status` on a real local Prefect server; API resolution; auth string."""

from __future__ import annotations

import json
import os
from pathlib import Path

import psutil
import pytest

from fleet.cli import main
from fleet.core import server
from fleet.core.errors import ServerError, ServerUnavailableError
from tests.support.inventories import write_inventory


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No API URL, credentials or state dir inherited from the session or the shell."""
    for key in (
        "PREFECT_API_URL",
        "PREFECT_API_AUTH_STRING",
        server.ENV_AUTH_FILE,
        server.ENV_STATE_DIR,
    ):
        monkeypatch.delenv(key, raising=False)
    return monkeypatch


def _auth_file(tmp_path: Path, secret: str, mode: int = 0o600) -> Path:
    path = tmp_path / "auth"
    path.write_text(secret + "\n")
    path.chmod(mode)
    return path


def test_no_server_configured_or_answering_is_exit_3_in_one_line(
    tmp_path: Path, clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    inv = write_inventory(tmp_path / "inv.yaml", "nosrv", ["nosrv-a"])
    state = str(tmp_path / "state")

    assert main(["server", "status", "--state-dir", state]) == 3
    assert "no Prefect server running" in capsys.readouterr().out

    # Nothing recorded, no PREFECT_API_URL, no api_url in the inventory.
    assert main(["provision", "-i", str(inv), "--state-dir", state]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "fleet server up" in err[0] and "PREFECT_API_URL" in err[0]

    # PREFECT_API_URL names a port where nothing listens.
    url = f"http://127.0.0.1:{server.free_port()}/api"
    clean_env.setenv("PREFECT_API_URL", url)
    assert main(["provision", "-i", str(inv), "--state-dir", state]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"fleet: error: no Prefect server at {url}: start one with `fleet server up` "
        "or set PREFECT_API_URL"
    ]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["speed", "nosrv-a", "1000"], "speed: 1000 deg/s is out of range"),
        (["speed", "nosrv-a", "90", "--acceleration", "-1"], "acceleration: -1 deg/s^2"),
        (["move", "nosrv-a", "400"], "move_to_angle: angle 400 is out of range"),
        (["activate", "nosrv-a", "Z"], "hotel: 'Z' is not a hotel of nosrv-a"),
        (["home", "nosrv-x"], "resort: unknown resort 'nosrv-x'"),
        (["recover", "nosrv-x"], "resort: unknown resort 'nosrv-x'"),
        (["status", "nosrv-x"], "RESORT: unknown nosrv-x; the inventory has nosrv-a"),
        (["status", "nosrv-a", "--wait", "-1"], "--wait -1: must be 0-3600 seconds"),
    ],
)
def test_a_bad_request_is_refused_as_such_before_the_server_is_looked_for(
    tmp_path: Path, clean_env: pytest.MonkeyPatch, capsys, argv, message
):
    """No server anywhere: a bad single-resort request is exit 2 naming the field, not exit 3."""
    inv = write_inventory(tmp_path / "inv.yaml", "nosrv", ["nosrv-a"])
    clean_env.setenv(server.ENV_STATE_DIR, str(tmp_path / "state"))
    assert main([*argv, "--inventory", str(inv)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("fleet: error: ") and message in line
    # the same verb with a good request does look for the server, and finds none
    good = {"speed": ["90"], "move": ["40"], "activate": ["A"]}.get(argv[0], [])
    assert main([argv[0], "nosrv-a", *good, "--inventory", str(inv)]) == 3
    assert "no Prefect server configured" in capsys.readouterr().err


def test_client_validate_names_an_unknown_request(tmp_path: Path):
    from fleet.client import FleetClient
    from fleet.core.errors import PlanError

    client = FleetClient(write_inventory(tmp_path / "inv.yaml", "nosrv", ["nosrv-a"]))
    client.validate("set_speed", "nosrv-a", 90.0)  # a good request: nothing raised
    with pytest.raises(PlanError, match="call: unknown request 'teleport'"):
        client.validate("teleport", "nosrv-a")


def test_auth_file_must_be_private(tmp_path: Path, clean_env: pytest.MonkeyPatch, capsys):
    loose = _auth_file(tmp_path, "lab:secret", mode=0o644)
    with pytest.raises(ServerError, match="must be 0600"):
        server.read_auth_file(loose)
    code = main(["server", "up", "--state-dir", str(tmp_path), "--auth-file", str(loose)])
    assert code == 1
    assert capsys.readouterr().err.count("\n") == 1
    assert not (tmp_path / "server" / "server.json").exists()


def test_up_refuses_a_plate_registry_out_of_reach_and_starts_nothing(
    tmp_path: Path, clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    url = f"postgresql+asyncpg://lab@127.0.0.1:{server.free_port()}/plates"  # nothing listens
    inv = write_inventory(tmp_path / "inv.yaml", "nosrv", ["nosrv-a"], registry={"url": url})
    state = tmp_path / "state"
    assert main(["server", "up", "--state-dir", str(state), "--inventory", str(inv)]) == 3
    out, err = capsys.readouterr()
    assert out == ""
    (line,) = err.strip().splitlines()
    assert line.startswith(f"fleet: error: plate registry at {url}: ")
    assert "Connect" in line  # the driver's own words: connection refused
    assert not server.server_dir(state).exists()


def test_up_without_an_inventory_says_the_registry_was_not_migrated(
    tmp_path: Path, clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    clean_env.chdir(tmp_path)  # no inventory/demo.yaml here
    clean_env.delenv("FLEET_INVENTORY", raising=False)
    loose = _auth_file(tmp_path, "lab:secret", mode=0o644)  # then stops before a server starts
    assert main(["server", "up", "--state-dir", str(tmp_path / "state"), "--auth-file", str(loose)])
    out, err = capsys.readouterr()
    assert out.splitlines() == [
        "plate registry: no inventory (--inventory or $FLEET_INVENTORY): not migrated"
    ]
    assert "must be 0600" in err
    assert not (tmp_path / "state" / "plates.db").exists()


def test_api_resolution_order(tmp_path: Path, clean_env: pytest.MonkeyPatch):
    class _Fleet:
        api_url = "http://inventory.example:4200/api"

    class _Inv:
        fleet = _Fleet()

    with pytest.raises(ServerUnavailableError, match="no Prefect server configured"):
        server.resolve_api(None, state=tmp_path)
    assert server.resolve_api(_Inv(), state=tmp_path).source == "inventory"
    clean_env.setenv("PREFECT_API_URL", "http://env.example:4200/api/")
    target = server.resolve_api(_Inv(), state=tmp_path)
    assert (target.url, target.source) == ("http://env.example:4200/api", "PREFECT_API_URL")
    clean_env.setenv("PREFECT_API_AUTH_STRING", "u:p")
    assert server.resolve_api(None, state=tmp_path).auth_string == "u:p"


@pytest.mark.orchestration
def test_up_is_idempotent_auth_is_enforced_and_down_stops_it(
    tmp_path: Path, clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    from prefect import get_client
    from prefect.exceptions import PrefectHTTPStatusError
    from prefect.settings import temporary_settings

    from fleet.core.plates.database import head_revision

    state = str(tmp_path / "state")
    secret = "lab:s3cret-token"
    auth = _auth_file(tmp_path, secret)
    inv = write_inventory(tmp_path / "inv.yaml", "srvup", ["srvup-a"])
    up = ["server", "up", "--state-dir", state, "--no-ui", "--auth-file", str(auth)]
    up += ["--inventory", str(inv)]
    registry = f"plate registry at sqlite+aiosqlite:///{tmp_path / 'state' / 'plates.db'}"
    try:
        assert main(up) == 0
        out = capsys.readouterr().out
        assert "started" in out
        # the inventory's plate registry is migrated first (one line)
        assert out.splitlines()[0] == f"{registry}: schema none -> {head_revision()}"
        info = server.ServerInfo.load(Path(state) / "server" / "server.json")
        assert info is not None and info.auth_file == str(auth)
        assert f"export PREFECT_API_URL={info.api_url}" in out
        assert info.api_url.startswith("http://127.0.0.1:")
        assert Path(info.log_path).exists()

        # A second `up` reports the running server instead of starting another.
        assert main(up) == 0
        out = capsys.readouterr().out
        assert "already running" in out and f"pid {info.pid}" in out
        assert out.splitlines()[0] == f"{registry}: schema {head_revision()}, up to date"

        assert main(["server", "status", "--state-dir", state, "--json"]) == 0
        status = json.loads(capsys.readouterr().out)
        assert status["running"] is True and status["pid"] == info.pid

        # A Prefect client without the auth string is refused; with it, it works.
        with (
            temporary_settings(updates={"api.url": info.api_url}),
            get_client(sync_client=True) as client,
        ):
            with pytest.raises(PrefectHTTPStatusError) as refused:
                client.read_work_pools(limit=1)
            assert refused.value.response.status_code == 401
        with (
            temporary_settings(updates={"api.url": info.api_url, "api.auth_string": secret}),
            get_client(sync_client=True) as client,
        ):
            assert isinstance(client.read_work_pools(limit=1), list)

        # Our own check names the fix; the recorded auth file is used for the local server.
        with pytest.raises(ServerUnavailableError, match=r"401.*FLEET_AUTH_FILE"):
            server.check_api(info.api_url, None)
        with pytest.raises(ServerUnavailableError, match="was refused"):
            server.check_api(info.api_url, "lab:wrong")
        with server.api_settings(state=state) as target:
            assert target.auth_string == secret
            assert os.environ["PREFECT_API_AUTH_STRING"] == secret
            with get_client(sync_client=True) as client:
                assert isinstance(client.read_work_pools(limit=1), list)
        assert "PREFECT_API_AUTH_STRING" not in os.environ

        # A client pointed at the server by PREFECT_API_URL alone, with FLEET_AUTH_FILE.
        other = tmp_path / "other-state"
        clean_env.setenv("PREFECT_API_URL", info.api_url)
        with pytest.raises(ServerUnavailableError, match="is required"):
            server.api_settings(state=other).__enter__()
        clean_env.setenv(server.ENV_AUTH_FILE, str(auth))
        with server.api_settings(state=other) as target:
            assert target.source == "PREFECT_API_URL" and target.auth_string == secret
    finally:
        assert main(["server", "down", "--state-dir", state]) == 0
    assert "stopped" in capsys.readouterr().out
    assert not psutil.pid_exists(info.pid) or psutil.Process(info.pid).status() == "zombie"
    assert main(["server", "status", "--state-dir", state]) == 3
    assert main(["server", "down", "--state-dir", state]) == 0
    assert "no Prefect server running" in capsys.readouterr().out


#: the newest migration of Prefect 3.8.8's SQLite schema (3.9 adds two after it)
PREFECT_38_HEAD = "a3b9c7d2e5f1"


@pytest.mark.orchestration
def test_up_upgrades_a_database_left_by_prefect_3_8(
    tmp_path: Path, clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    import subprocess
    import sys

    from prefect import get_client
    from prefect.settings import temporary_settings

    from fleet.core.server_db import sqlite_revision

    state = str(tmp_path / "state")
    up = ["server", "up", "--state-dir", state, "--no-ui"]
    home = server.server_home(state)
    try:
        assert main(up) == 0
        head = sqlite_revision(home)
        assert head is not None and head != PREFECT_38_HEAD
        assert main(["server", "down", "--state-dir", state]) == 0
        # the schema a 3.8 server left behind: Prefect's own downgrade to its last revision
        env = server.server_env(home, server.free_port())
        downgrade = [sys.executable, "-m", "prefect", "server", "database", "downgrade"]
        subprocess.run([*downgrade, "-y", "-r", PREFECT_38_HEAD], env=env, check=True, timeout=120)
        assert sqlite_revision(home) == PREFECT_38_HEAD
        capsys.readouterr()

        assert main(up) == 0
        out = capsys.readouterr().out
        assert (
            f"database upgraded by Prefect's migrations: revision {PREFECT_38_HEAD} -> {head}"
            in out
        )
        assert sqlite_revision(home) == head
        info = server.ServerInfo.load(server.server_dir(state) / server.STATE_FILE)
        assert info is not None
        with (
            temporary_settings(updates={"api.url": info.api_url}),
            get_client(sync_client=True) as client,
        ):
            assert isinstance(client.read_work_pools(limit=1), list)
    finally:
        assert main(["server", "down", "--state-dir", state]) == 0
