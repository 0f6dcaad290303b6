"""A real rollout to fake Pis against a real Prefect server, with emulated motors.

Order matters (one lab per session): first rollout, checks on the Pis, a parent flow run per
resort, an idempotent second run, then `--check --diff`.
"""

from __future__ import annotations

import json
import re
import subprocess
import time

import pytest
from rollout_helpers import RESORTS, VENV_BIN, Lab, run

pytestmark = [pytest.mark.ansible, pytest.mark.timeout(900)]

RECAP = re.compile(
    r"^(\S+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M
)


def recap(output: str) -> dict[str, dict[str, int]]:
    """PLAY RECAP per host: ok, changed, unreachable, failed."""
    return {
        host: {"ok": int(ok), "changed": int(ch), "unreachable": int(un), "failed": int(fa)}
        for host, ok, ch, un, fa in RECAP.findall(output)
    }


def workers(lab: Lab) -> dict[str, dict]:
    """Workers of the lab's device pool, by name."""
    return {w["name"]: w for w in lab.api("POST", "/work_pools/rollout-resorts/workers/filter", {})}


def test_first_rollout_brings_every_worker_online(lab: Lab) -> None:
    result = lab.playbook()
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-6000:]
    hosts = recap(result.stdout)
    assert set(hosts) == set(lab.pis.values()), out[-3000:]
    assert all(h["failed"] == 0 and h["unreachable"] == 0 for h in hosts.values())
    # Canary first: the rolling play ran in two batches of one Pi each.
    assert out.count("PLAY [Roll out the device agents") == 2
    online = {n for n, w in workers(lab).items() if w["status"] == "ONLINE"}
    assert {f"agent-{r}" for r in RESORTS} <= online
    # The drain chain resumed every queue it paused.
    for resort in RESORTS:
        queue = lab.api("GET", f"/work_pools/rollout-resorts/queues/{resort}")
        assert queue["is_paused"] is False
    # The auth string never reaches the output.
    assert lab.auth_string.split(":", 1)[1] not in out


def test_units_verify_and_files_are_private(lab: Lab) -> None:
    for index, resort in enumerate(RESORTS, start=1):
        unit = f"/etc/systemd/system/plate-resort-agent@{resort}.service"
        verify = lab.pi_exec(index, "systemd-analyze", "verify", unit)
        assert verify.returncode == 0, verify.stderr
        assert verify.stderr == "", verify.stderr
        state = lab.pi_exec(index, "systemctl", "is-active", f"plate-resort-agent@{resort}")
        assert state.stdout.strip() == "active"
        modes = lab.pi_exec(
            index,
            "stat",
            "-c",
            "%a %U %n",
            "/etc/plate-resort-agent/prefect.env",
            f"/etc/plate-resort-agent/{resort}.json",
        )
        assert modes.stdout.split("\n")[0].startswith("600 root "), modes.stdout
        assert modes.stdout.split("\n")[1].startswith("640 root "), modes.stdout
        settings = json.loads(
            lab.pi_exec(index, "cat", f"/etc/plate-resort-agent/{resort}.json").stdout
        )
        assert settings["worker_name"] == f"agent-{resort}"
        assert settings["api_url"] == lab.api_url
        groups = lab.pi_exec(index, "id", "-nG", "plate-resort")
        assert "dialout" in groups.stdout.split()
        rule = lab.pi_exec(index, "cat", "/etc/udev/rules.d/99-plate-resort-u2d2.rules").stdout
        assert 'ATTRS{idVendor}=="0403", ATTRS{idProduct}=="6014"' in rule
        assert 'ATTR{latency_timer}="1"' in rule


def completed_runs(lab: Lab, flow: str, queue: str | None = None) -> list[dict]:
    """COMPLETED flow runs of `flow` on the server (optionally only those of work queue `queue`)."""
    body: dict = {
        "flows": {"name": {"any_": [flow]}},
        "flow_runs": {"state": {"type": {"any_": ["COMPLETED"]}}},
    }
    if queue is not None:
        body["flow_runs"]["work_queue_name"] = {"any_": [queue]}
    return lab.api("POST", "/flow_runs/filter", body)


def test_each_resort_answers_a_parent_flow_run(lab: Lab) -> None:
    for resort in RESORTS:
        result = run(
            [
                str(VENV_BIN / "fleet"),
                "activate",
                resort,
                "C",
                "--inventory",
                str(lab.fleet_inventory),
                "--json",
                "--lock-timeout",
                "60",
            ],
            env=lab.client_env(),
            timeout=180,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        answer = json.loads(result.stdout)
        assert answer["resort"] == resort
        # The emulated carousel really turned: hotel C of four sits at 180 degrees.
        assert answer["result"]["hotel"] == "C", answer
        assert abs(float(answer["result"]["position"]) - 180.0) <= 1.0, answer
        # The device subflow ran on the resort's own queue, i.e. in the agent on its fake Pi.
        assert completed_runs(lab, "activate-hotel", queue=resort), resort
    assert len(completed_runs(lab, "fleet-activate-hotel")) >= len(RESORTS)


def test_second_run_changes_nothing(lab: Lab) -> None:
    result = lab.playbook()
    assert result.returncode == 0, (result.stdout + result.stderr)[-6000:]
    hosts = recap(result.stdout)
    assert set(hosts) == set(lab.pis.values())
    assert all(h["changed"] == 0 for h in hosts.values()), result.stdout[-4000:]


def test_check_diff_runs_clean(lab: Lab) -> None:
    result = lab.playbook("--check", "--diff")
    assert result.returncode == 0, (result.stdout + result.stderr)[-6000:]
    hosts = recap(result.stdout)
    assert all(h["changed"] == 0 and h["failed"] == 0 for h in hosts.values()), result.stdout
    assert lab.auth_string.split(":", 1)[1] not in result.stdout + result.stderr


def test_restart_waits_for_the_active_run_then_resumes(lab: Lab) -> None:
    """A unit change on Pi 1 while resort-a is moving: pause, wait for the run, restart, resume."""
    resort, pi = RESORTS[0], lab.pis[RESORTS[0]]
    slow = run(  # through the parent flow: the agent refuses a set-speed run without its lease
        [
            str(VENV_BIN / "fleet"),
            "speed",
            resort,
            "5",
            "--inventory",
            str(lab.fleet_inventory),
        ],
        env=lab.client_env(),
        timeout=120,
    )
    assert slow.returncode == 0, slow.stderr[-2000:]
    # From hotel C (180 deg) to 0 deg at 5 deg/s: a ~36 s run, longer than the playbook needs
    # to reach its drain step.
    move = subprocess.Popen(
        [str(VENV_BIN / "fleet"), "home", resort, "--inventory", str(lab.fleet_inventory)],
        env=lab.client_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        running = {
            "flow_runs": {"state": {"type": {"any_": ["RUNNING"]}}},
            "work_pool_queues": {"name": {"any_": [resort]}},
        }
        deadline = time.monotonic() + 60
        while lab.api("POST", "/flow_runs/count", running) == 0:
            assert move.poll() is None, move.communicate()
            assert time.monotonic() < deadline, "the move never started"
            time.sleep(0.3)
        result = lab.playbook("--limit", pi, "-e", '{"device_agent_restart_sec": 6}')
        out, err = move.communicate(timeout=120)
    finally:
        if move.poll() is None:
            move.kill()
    assert result.returncode == 0, (result.stdout + result.stderr)[-6000:]
    assert move.returncode == 0, out + err  # the run finished; the restart did not kill it
    assert re.search(r"RETRYING: .*Wait until no run is active", result.stdout), result.stdout
    drained = result.stdout.index("Wait until no run is active")
    assert result.stdout.index("RUNNING HANDLER [device_agent : Restart the agents]") > drained
    queue = lab.api("GET", f"/work_pools/rollout-resorts/queues/{resort}")
    assert queue["is_paused"] is False
    assert workers(lab)[f"agent-{resort}"]["status"] == "ONLINE"
