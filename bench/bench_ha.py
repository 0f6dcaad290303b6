"""The fleet on several servers: 50 resorts through `fleet server up --replicas 2`.

`make bench-ha` (`python -m bench ha`; not part of `make bench`). In one run, on this machine:

* the topology from the real CLI: PostgreSQL, Redis, `BENCH_HA_REPLICAS` API replicas (default 2),
  one services process and HAProxy, under a fresh state directory;
* `BENCH_HA_RESORTS` timed pty emulators (default 50, 180 deg/s) with one real agent each; the
  agents are attached to api-1 (the inventory's `fleet.api_url`), this process and its
  schedulers to api-2, so every run is created on one replica and announced to its agent by the
  other, through Redis (`make test-ha` covers the balancer's path);
* dispatch: `run_deployment` submission -> first line of the device flow's body (as in
  `bench_dispatch`), `BENCH_HA_N` runs (default 40) rotating over the resorts;
* server CPU at idle: every process of the topology (and PostgreSQL's children) over
  `BENCH_HA_IDLE_S` seconds (default 60) with all agents connected;
* memory per agent: the agents' resident set size (median and max);
* a batch of `BENCH_HA_OPS` activations (default 200) across all resorts with
  `max_concurrency` = resorts: makespan over the busiest resort's summed physical move time,
  the same ratio as `bench_batch`.

The baseline, measured the same way in the same run (`baseline_single_server`; skip it with
`BENCH_HA_BASELINE=0`): the same fleet on plain `fleet server up`, one process on SQLite.

The topology is brought down at the end, also on failure.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from bench.bench_batch import round_robin_batch
from bench.bench_dispatch import dispatch_samples, pct, summarise


def _server_cli(state: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    from tests.support.ha import fleet_cli

    done = fleet_cli(state, *argv, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"fleet server {' '.join(argv)}: {done.stderr.strip()}")
    return done


@contextlib.contextmanager
def _topology(replicas: int) -> Iterator[tuple[list[str], list[int], float]]:
    """`fleet server up --replicas N` (0: the single-process SQLite default) in a fresh state
    directory: (each API replica's own URL, or the one server's; pids of the server's processes;
    seconds to start)."""
    state = Path(tempfile.mkdtemp(prefix="bench-ha-", dir="/tmp"))
    state.chmod(0o755)  # PostgreSQL's `postgres` user must reach its data directory
    t0 = time.monotonic()
    try:
        several = ["--replicas", str(replicas)] if replicas else []
        up = _server_cli(state, "up", *several, "--no-ui")
        up_s = time.monotonic() - t0
        api_url = up.stdout.strip().splitlines()[-1].removeprefix("export PREFECT_API_URL=")
        doc = json.loads(_server_cli(state, "status", "--json").stdout)
        procs = sorted(doc.get("processes", []), key=lambda p: str(p["name"]))
        pids = [int(p["pid"]) for p in procs] or [int(doc["pid"])]
        apis = [f"http://127.0.0.1:{p['port']}/api" for p in procs if p["role"] == "api"]
        yield apis or [api_url], pids, up_s
    finally:
        if (state / "server").exists():
            _server_cli(state, "down")


def _cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            proc = psutil.Process(pid)
            for p in [proc, *proc.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    times = p.cpu_times()
                    total += times.user + times.system
    return total


def _batch(client: Any, resorts: list[str], ops_n: int) -> dict[str, Any]:
    report, _, busiest = round_robin_batch(client, resorts, ops_n)
    return {
        "operations": ops_n,
        "completed": sum(r.state == "Completed" for r in report.results),
        "makespan_s": round(report.makespan, 2),
        "busiest_resort_move_total_s": round(busiest, 2),
        "ratio_makespan_over_busiest_moves": round(report.makespan / busiest, 2),
        "per_operation_median_s": round(
            statistics.median(r.duration for r in report.results if r.duration), 3
        ),
        "failed_by_state": dict(Counter(r.state for r in report.failed)),
        "failures": [f"{r.operation}: {r.state}: {r.error}" for r in report.failed][:5],
    }


def _measure(replicas: int, resorts_n: int, n: int, idle_s: float, ops_n: int) -> dict[str, Any]:
    """Every figure on one topology (`replicas` 0: the single-process server)."""
    from fleet.client import FleetClient
    from fleet.core import server as fleet_server
    from tests.support.fleet_harness import start_fleet

    work = Path(tempfile.mkdtemp(prefix="bench-ha-fleet-"))
    out: dict[str, Any] = {}
    with _topology(replicas) as (apis, pids, up_s):
        out["server_up_s"] = round(up_s, 1)
        agents_on, schedulers_on = apis[0], apis[-1]  # api-1 and api-2 with several replicas
        updates = {"PREFECT_API_URL": schedulers_on, "PREFECT_HOME": str(work / "client")}
        with fleet_server.prefect_environment(updates):
            t0 = time.monotonic()
            fleet = start_fleet(
                work / "fleet",
                "ha",
                resorts_n,
                instant=False,
                speed=180.0,
                fleet_options={"api_url": agents_on},
                timeout=900,
                poll_interval=None,  # the agent's default (15 s), as deployed
            )
            try:
                out["agents_online_s"] = round(time.monotonic() - t0, 1)
                client = FleetClient(fleet.inventory_path, lock_timeout=300)
                names = fleet.names
                client.activate_hotel(names[0], "A")  # warm-up: imports, first registration

                rss = sorted(
                    psutil.Process(p.pid).memory_info().rss / 2**20 for p in fleet.agents.values()
                )
                out["agent_rss_mb"] = round(statistics.median(rss), 1)
                out["agent_rss_max_mb"] = round(rss[-1], 1)

                time.sleep(5)  # let the agents' start-up writes settle
                before = _cpu_seconds(pids)
                time.sleep(idle_s)
                out["server_cpu_percent_idle"] = round(
                    (_cpu_seconds(pids) - before) / idle_s * 100, 1
                )
                out["load_average_1min_idle"] = round(os.getloadavg()[0], 2)

                samples = dispatch_samples(
                    [f"request-position/{names[i % len(names)]}" for i in range(n)]
                )
                out["dispatch"] = summarise(samples)
                out["dispatch_p50_s"] = round(statistics.median(samples), 4)
                out["dispatch_p95_s"] = round(pct(samples, 0.95), 4)

                out["batch"] = _batch(client, names, ops_n)
                out["batch_makespan_ratio"] = out["batch"]["ratio_makespan_over_busiest_moves"]
            finally:
                fleet_server.flush_prefect_clients()
                fleet.stop()
    return out


def run(results_dir: Path) -> dict[str, Any]:
    """Run the multi-server benchmark and its single-server baseline; return the numbers
    (`bench/results/ha.json`)."""
    replicas = int(os.environ.get("BENCH_HA_REPLICAS", "2"))
    resorts_n = int(os.environ.get("BENCH_HA_RESORTS", "50"))
    n = int(os.environ.get("BENCH_HA_N", "40"))
    idle_s = float(os.environ.get("BENCH_HA_IDLE_S", "60"))
    ops_n = int(os.environ.get("BENCH_HA_OPS", "200"))
    result: dict[str, Any] = {
        "replicas": replicas,
        "resorts": resorts_n,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    result.update(_measure(replicas, resorts_n, n, idle_s, ops_n))
    if os.environ.get("BENCH_HA_BASELINE", "1") != "0":
        try:
            result["baseline_single_server"] = _measure(0, resorts_n, n, idle_s, ops_n)
        except Exception as exc:  # one SQLite process may not carry this many agents at all
            result["baseline_single_server"] = {"failed": f"{type(exc).__name__}: {exc}"[:500]}
    return result


if __name__ == "__main__":  # pragma: no cover - manual run
    print(json.dumps(run(Path("bench/results")), indent=2))
