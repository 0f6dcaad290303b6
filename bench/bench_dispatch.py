"""Dispatch latency of the plate-resort worker vs Prefect's process worker, e-stop latency, RSS.

Measured in one run against a fresh local server (SQLite) and pty emulators:

* dispatch: `run_deployment` submission -> first line of the flow body on the device
  (the device flows record `started_at`); the stock process worker at default settings runs a
  probe flow that records the same;
* e-stop: `fleet.core.estop` call -> `torque_enable = 0` in the emulator's write log, during a move;
* agent RSS idle and after 100 runs;
* N idle agents (env `BENCH_IDLE_AGENTS`, default 20): server CPU over 60 s and dispatch p95
  with all of them connected.

Env: `BENCH_N` (runs per dispatch sample, default 20), `BENCH_STOCK_N` (default 10).
"""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parents[1]


def pct(values: list[float], q: float) -> float:
    """The `q` quantile of `values` (nearest rank)."""
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def summarise(values: list[float]) -> dict[str, float]:
    """n, median, p95 and max of latencies in seconds."""
    return {
        "n": len(values),
        "median_s": round(statistics.median(values), 4),
        "p95_s": round(pct(values, 0.95), 4),
        "max_s": round(max(values), 4),
    }


def dispatch_samples(deployments: list[str], **params: Any) -> list[float]:
    """Submit one run of each deployment in turn; return submission -> device flow body start
    (the device flow's recorded `started_at`) of every run that completed."""
    from prefect.deployments import run_deployment
    from prefect.flow_runs import wait_for_flow_run
    from prefect.utilities.asyncutils import run_coro_as_sync

    from flows.results import read_device_result

    out = []
    for deployment in deployments:
        t0 = time.time()
        fr = run_deployment(deployment, parameters=params, timeout=0, as_subflow=False)
        fr = run_coro_as_sync(wait_for_flow_run(fr.id, timeout=120))
        if fr.state.is_completed():
            out.append(float(read_device_result(fr.id)["started_at"]) - t0)
    return out


def _stock(api_dir: Path, n: int) -> list[float]:
    from prefect import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.deployments import run_deployment
    from prefect.flow_runs import wait_for_flow_run
    from prefect.utilities.asyncutils import run_coro_as_sync

    out_dir = api_dir / "stock"
    out_dir.mkdir()

    async def setup() -> None:
        async with get_client() as c:
            await c.create_work_pool(WorkPoolCreate(name="stock", type="process"))
            flow_id = await c.create_flow_from_name("stock-probe")
            await c.create_deployment(
                flow_id=flow_id,
                name="stock",
                work_pool_name="stock",
                entrypoint="bench/stock_probe.py:stock_probe",
                path=str(REPO),
                job_variables={"working_dir": str(REPO)},
            )

    run_coro_as_sync(setup())
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO)
    worker = subprocess.Popen(
        [sys.executable, "-m", "prefect", "worker", "start", "--pool", "stock"],
        env=env,
        stdout=(api_dir / "stock-worker.log").open("wb"),
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        time.sleep(5)
        values = []
        for _ in range(n):
            t0 = time.time()
            fr = run_deployment(
                "stock-probe/stock",
                parameters={"out_dir": str(out_dir)},
                timeout=0,
                as_subflow=False,
            )
            fr = run_coro_as_sync(wait_for_flow_run(fr.id, timeout=180))
            mark = out_dir / str(fr.id)
            if fr.state.is_completed() and mark.exists():
                values.append(float(mark.read_text()) - t0)
        return values
    finally:
        worker.terminate()
        try:
            worker.wait(20)
        except subprocess.TimeoutExpired:
            worker.kill()


def _estop_latency(env: Any, n: int = 5) -> list[float]:
    from prefect.deployments import run_deployment
    from prefect.flow_runs import wait_for_flow_run
    from prefect.utilities.asyncutils import run_coro_as_sync

    from fleet.core import locks
    from fleet.core.estop import clear_estop, estop
    from resort_common import names
    from tests.support.emulator import control, write_log
    from tests.support.waiting import wait_for

    # the moves are created directly on the device deployments, under a reservation's lease
    held = run_coro_as_sync(
        locks.acquire(names.lock_name("resort-a"), timeout=60, resort="resort-a")
    )
    lease = str(held.lease_id)
    values = []
    try:
        for i in range(n):
            home = run_deployment(
                "go-home/resort-a", parameters={"lease": lease}, timeout=0, as_subflow=False
            )
            run_coro_as_sync(wait_for_flow_run(home.id, timeout=60))
            fr = run_deployment(
                "move-to-angle/resort-a",
                parameters={"angle": 179.0 + i, "lease": lease},
                timeout=0,
                as_subflow=False,
            )
            wait_for(lambda: control(env["link"], {"stats": True})["moving"], 30, 0.02)
            time.sleep(0.3)
            t0 = time.time()
            estop(env["inv"], ["resort-a"], "bench")
            offs = [
                w["t"]
                for w in write_log(env["log"])
                if w["name"] == "torque_enable" and w["value"] == 0 and w["t"] >= t0
            ]
            if offs:
                values.append(offs[0] - t0)
            run_coro_as_sync(wait_for_flow_run(fr.id, timeout=60))
            clear_estop(env["inv"], ["resort-a"])
    finally:
        run_coro_as_sync(locks.release(held))
    return values


def run(results_dir: Path) -> dict[str, Any]:
    """Run the dispatch benchmark; return its numbers."""
    from fleet.core.provision import provision
    from tests.support.agents import start_agent
    from tests.support.inventories import write_inventory
    from tests.support.prefect_server import prefect_pointed_at, start_prefect_server
    from tests.support.waiting import wait_for

    n = int(os.environ.get("BENCH_N", "20"))
    stock_n = int(os.environ.get("BENCH_STOCK_N", "10"))
    idle_agents = int(os.environ.get("BENCH_IDLE_AGENTS", "20"))
    work = Path(tempfile.mkdtemp(prefix="bench-dispatch-"))
    server = start_prefect_server(work / "home")
    pointed = contextlib.ExitStack()  # this process's Prefect settings -> the new server
    pointed.enter_context(prefect_pointed_at(server))
    agents = []
    result: dict[str, Any] = {}
    try:
        from fleet.core.inventory import load_inventory
        from fleet.core.status import read_status
        from flows.agent_settings import agent_settings_for

        names = ["resort-a"] + [f"idle-{i:02d}" for i in range(idle_agents)]
        path = write_inventory(
            work / "inventory.yaml",
            "bench",
            names,
            defaults={"speed": 90.0, "acceleration": 0, "move_timeout": 60},
            api_url=server.api_url,
        )
        inv = load_inventory(path)
        provision(inv)
        settings = agent_settings_for(inv, "resort-a")
        main = start_agent(inv.path, "resort-a", work / "agent-resort-a.log")
        agents.append(main)
        wait_for(lambda: read_status(inv)[0].online, 120, 0.5, "agent online")
        time.sleep(2)
        proc = psutil.Process(main.proc.pid)
        result["agent_rss_idle_mb"] = round(proc.memory_info().rss / 2**20, 1)
        probe = ["request-position/resort-a"]
        result["plate_resort_worker"] = summarise(dispatch_samples(probe * n))
        env = {
            "inv": inv,
            "link": Path(settings.device.serial_port),
            "log": Path(settings.emulator.log_file),
        }
        result["estop_to_torque_off"] = summarise(_estop_latency(env))
        dispatch_samples(["request-position/resort-a"] * max(0, 100 - n))
        result["agent_rss_after_100_runs_mb"] = round(proc.memory_info().rss / 2**20, 1)
        result["process_worker_default"] = summarise(_stock(work, stock_n))
        result["ratio_median_stock_over_ours"] = round(
            result["process_worker_default"]["median_s"]
            / result["plate_resort_worker"]["median_s"],
            1,
        )
        if idle_agents:
            for name in names[1:]:
                agents.append(start_agent(inv.path, name, work / f"agent-{name}.log"))
            wait_for(
                lambda: sum(s.online for s in read_status(inv)) == len(names),
                300,
                2,
                "all agents online",
            )
            time.sleep(10)
            srv = psutil.Process(server.process.pid)
            procs = [srv, *srv.children(recursive=True)]
            before = sum(p.cpu_times().user + p.cpu_times().system for p in procs)
            time.sleep(60)
            after = sum(p.cpu_times().user + p.cpu_times().system for p in procs)
            result[f"server_cpu_percent_{idle_agents}_idle_agents"] = round(
                (after - before) / 60 * 100, 1
            )
            result[f"plate_resort_worker_with_{idle_agents}_agents"] = summarise(
                dispatch_samples(["request-position/resort-a"] * n)
            )
        result["load_average_1min"] = round(os.getloadavg()[0], 2)
    finally:
        for agent in agents:
            if agent.proc.poll() is None:
                agent.proc.terminate()
        for agent in agents:
            try:
                agent.proc.wait(60)
            except subprocess.TimeoutExpired:
                agent.kill()
        server.stop()
        pointed.close()
    return result


if __name__ == "__main__":
    print(run(REPO / "bench" / "results"))
