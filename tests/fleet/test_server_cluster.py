"""The multi-server topology's parts that need no server: settings, HAProxy config, records, CLI.

The real topology (PostgreSQL, Redis, replicas, HAProxy) is started in tests/e2e/test_server_ha.py
(`make test-ha`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from fleet.cli import main
from fleet.core.errors import ServerError
from fleet.core.server.balancer import haproxy_config
from fleet.core.server.cluster import (
    CLUSTER_FILE,
    ClusterInfo,
    ClusterProcess,
    cluster_status,
    process_health,
    restart_stopped,
)
from fleet.core.server.lifecycle import restart_members
from fleet.core.server.process import ha_settings
from fleet.core.server.state import ServerInfo, server_dir


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for key in ("PREFECT_API_URL", "FLEET_STATE_DIR", "PREFECT_API_AUTH_STRING", "FLEET_AUTH_FILE"):
        monkeypatch.delenv(key, raising=False)
    return monkeypatch


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _stale_record(state: Path) -> ClusterInfo:
    """A `cluster.json` whose processes have all exited."""
    directory = server_dir(state)
    directory.mkdir(parents=True)
    procs = tuple(
        ClusterProcess(role, name, _dead_pid(), 1.0, port, str(directory / f"{name}.log"))
        for role, name, port in [
            ("postgres", "postgres", 5432),
            ("redis", "redis", 6379),
            ("api", "api-1", 4201),
            ("services", "services", None),
            ("balancer", "balancer", 4200),
        ]
    )
    info = ClusterInfo(1, "http://127.0.0.1:4200/api", "postgresql+asyncpg://f:***@h/p", procs, 1.0)
    info.save(directory / CLUSTER_FILE)
    return info


def test_every_shared_state_of_the_servers_is_in_redis() -> None:
    api = ha_settings(6390, webserver_only=True)
    services = ha_settings(6390, webserver_only=False)
    assert api["PREFECT__SERVER_WEBSERVER_ONLY"] == "1"
    assert "PREFECT__SERVER_WEBSERVER_ONLY" not in services
    for settings in (api, services):
        assert settings["PREFECT_SERVER_DATABASE_MIGRATE_ON_START"] == "false"
        assert settings["PREFECT_SERVER_EVENTS_MESSAGING_BROKER"] == "prefect_redis.messaging"
        assert settings["PREFECT_SERVER_EVENTS_MESSAGING_CACHE"] == "prefect_redis.messaging"
        assert settings["PREFECT_SERVER_EVENTS_CAUSAL_ORDERING"] == "prefect_redis.ordering"
        assert settings["PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE"] == "prefect_redis.lease_storage"
        assert (
            settings["PREFECT_SERVER_WORKER_CHANNEL_CLEANUP_QUEUE_STORAGE"]
            == "prefect_redis.cleanup_queue"
        )
        assert settings["PREFECT_REDIS_MESSAGING_URL"] == "redis://127.0.0.1:6390/0"
        assert settings["PREFECT_REDIS_WORKER_CLEANUP_QUEUE_URL"] == "redis://127.0.0.1:6390/0"
        assert settings["PREFECT_SERVER_DOCKET_URL"] == "redis://127.0.0.1:6390/1"


def test_the_redis_settings_are_prefect_settings_naming_modules_that_exist(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import importlib

    from prefect.settings import Settings

    for key, value in ha_settings(6390, webserver_only=False).items():
        monkeypatch.setenv(key, value)
    server = Settings().server
    assert server.database.migrate_on_start is False
    assert server.events.messaging_broker == "prefect_redis.messaging"
    assert server.events.messaging_cache == "prefect_redis.messaging"
    assert server.events.causal_ordering == "prefect_redis.ordering"
    assert server.concurrency.lease_storage == "prefect_redis.lease_storage"
    assert server.worker_channel.cleanup_queue_storage == "prefect_redis.cleanup_queue"
    assert server.docket.url == "redis://127.0.0.1:6390/1"
    for module in ("messaging", "ordering", "lease_storage", "cleanup_queue"):
        importlib.import_module(f"prefect_redis.{module}")
    from prefect_redis.cleanup_queue import RedisWorkerCleanupQueueSettings
    from prefect_redis.client import RedisMessagingSettings

    assert RedisMessagingSettings().url == "redis://127.0.0.1:6390/0"
    assert RedisWorkerCleanupQueueSettings().url == "redis://127.0.0.1:6390/0"


def test_haproxy_config_balances_the_replicas_and_tunnels_websockets(tmp_path: Path) -> None:
    text = haproxy_config(4200, [4201, 4202])
    assert "bind 127.0.0.1:4200" in text
    assert "server api-1 127.0.0.1:4201 check" in text
    assert "server api-2 127.0.0.1:4202 check" in text
    assert "option httpchk GET /api/health" in text
    assert "timeout tunnel 1h" in text
    if shutil.which("haproxy") is None:
        pytest.skip("haproxy is not installed (Debian package haproxy)")
    config = tmp_path / "haproxy.cfg"
    config.write_text(text)
    checked = subprocess.run(
        ["haproxy", "-c", "-q", "-f", str(config)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stderr


def test_cluster_record_round_trips_and_garbage_is_none(tmp_path: Path) -> None:
    info = _stale_record(tmp_path)
    path = server_dir(tmp_path) / CLUSTER_FILE
    assert ClusterInfo.load(path) == info
    path.write_text("{not json")
    assert ClusterInfo.load(path) is None
    path.write_text(json.dumps({"replicas": 1}))
    assert ClusterInfo.load(path) is None


def test_exited_processes_are_stopped(tmp_path: Path) -> None:
    info = _stale_record(tmp_path)
    assert {process_health(p, info.api_url) for p in info.processes} == {"stopped"}
    rows = cluster_status(info)
    assert [r["role"] for r in rows] == ["postgres", "redis", "api", "services", "balancer"]
    assert {r["health"] for r in rows} == {"stopped"}


def test_status_and_down_of_a_topology_that_died(tmp_path: Path, clean_env, capsys) -> None:
    _stale_record(tmp_path)
    assert main(["server", "status", "--json", "--state-dir", str(tmp_path)]) == 3
    doc = json.loads(capsys.readouterr().out)
    assert doc["running"] is False
    assert [p["health"] for p in doc["processes"]] == ["stopped"] * 5
    assert main(["server", "down", "--state-dir", str(tmp_path)]) == 0
    assert "no Prefect server running" in capsys.readouterr().out
    assert not (server_dir(tmp_path) / CLUSTER_FILE).exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--replicas", "0"], "fleet: error: --replicas 0: must be at least 1\n"),
        (
            ["--replicas", "2", "--database-url", "postgresql+asyncpg://u:p@h/db"],
            "fleet: error: --database-url with --replicas: not supported (it runs its own "
            "PostgreSQL)\n",
        ),
    ],
)
def test_bad_replica_requests_are_refused_in_one_line(
    tmp_path: Path, clean_env, capsys, argv: list[str], message: str
) -> None:
    assert main(["server", "up", *argv, "--state-dir", str(tmp_path)]) == 2
    captured = capsys.readouterr()
    assert captured.err == message
    assert not server_dir(tmp_path).exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="PostgreSQL runs as `postgres` only for root")
def test_a_state_dir_the_postgres_user_cannot_enter_is_named(tmp_path: Path) -> None:
    from fleet.core.server.postgres import _check_traversable, _run_as

    user = _run_as()
    assert user == "postgres"
    private = tmp_path / "private"
    (private / "state" / "postgres").mkdir(parents=True)
    private.chmod(0o700)
    with pytest.raises(ServerError, match=r"PostgreSQL runs as 'postgres', which cannot enter .*"):
        _check_traversable(private / "state" / "postgres" / "data", user)


def _record_for(state: Path, alive: set[str]) -> tuple[ClusterInfo, ServerInfo]:
    """A topology whose members named in `alive` run (this process stands in for them)."""
    import psutil

    info = _stale_record(state)
    me = psutil.Process()
    procs = tuple(
        replace(p, pid=me.pid, create_time=me.create_time()) if p.name in alive else p
        for p in info.processes
    )
    info = replace(info, processes=procs)
    info.save(server_dir(state) / CLUSTER_FILE)
    record = ServerInfo(1, 1.0, info.api_url, None, 4200, "", "", info.database, None, 1.0)
    return info, record


def test_a_topology_whose_database_or_balancer_stopped_is_not_patched_up(tmp_path: Path) -> None:
    info, record = _record_for(tmp_path, {"redis", "api-1", "services"})
    with pytest.raises(ServerError) as caught:
        restart_stopped(server_dir(tmp_path), info, record)
    assert str(caught.value) == (
        "postgres, balancer stopped: restart the servers with `fleet server down` and "
        "`fleet server up --replicas 1`"
    )
    assert ClusterInfo.load(server_dir(tmp_path) / CLUSTER_FILE) == info


def test_nothing_is_restarted_when_every_member_runs(tmp_path: Path) -> None:
    names = {"postgres", "redis", "api-1", "services", "balancer"}
    info, record = _record_for(tmp_path, names)
    assert restart_stopped(server_dir(tmp_path), info, record) == (info, [])
    assert restart_members(tmp_path / "elsewhere") == []
