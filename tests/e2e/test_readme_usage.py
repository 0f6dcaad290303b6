"""The README's usage block, pasted into a fresh shell as a newcomer would, works line by line.

The block runs in one `bash` (as pasted) in a scratch directory holding a copy of `inventory/`,
with `.venv/bin` on the `PATH` and nothing of this session's Prefect or fleet environment, so the
commands find the server `fleet server up` starts there, as they would for a new user.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = [pytest.mark.orchestration, pytest.mark.slow, pytest.mark.timeout(420)]

REPO = Path(__file__).resolve().parents[2]


def usage_block() -> str:
    """The first bash block under the README's `## Using it`."""
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Using it") :]
    found = re.search(r"```bash\n(.*?)```", section, re.S)
    assert found, "README: no ```bash block under '## Using it'"
    return found.group(1)


def fresh_env(home: Path) -> dict[str, str]:
    """A new user's shell: the venv's commands on the PATH, no PREFECT_* or FLEET_* settings."""
    keep = {"LANG", "LC_ALL", "TERM", "TMPDIR"}
    env = {k: v for k, v in os.environ.items() if k in keep}
    env["HOME"] = str(home)
    env["PATH"] = f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin"
    return env


@pytest.fixture
def scratch(tmp_path: Path) -> Iterator[Path]:
    """A directory laid out like the repository's root for the block (its inventory)."""
    work = tmp_path / "work"
    shutil.copytree(REPO / "inventory", work / "inventory")
    (tmp_path / "home").mkdir()
    yield work
    # whatever a failed line left running: the server `fleet server up` started, agents
    fleet = str(Path(sys.executable).parent / "fleet")
    env = fresh_env(tmp_path / "home")
    subprocess.run([fleet, "server", "down"], check=False, cwd=work, env=env, timeout=60)


def _stop_leftovers(proc: subprocess.Popen[str], scratch: Path) -> None:
    """Kill the shell's group (what it left in the background after a failed line) and any
    emulator an agent started under `scratch` (they run in sessions of their own)."""
    import psutil

    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)
    for other in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            if str(scratch) in " ".join(other.info["cmdline"] or []):
                other.kill()


def test_the_usage_block_runs_pasted_into_a_fresh_shell(scratch: Path) -> None:
    block = usage_block()
    assert "fleet server up" in block and "fleet server down" in block
    env = fresh_env(scratch.parent / "home")
    log = scratch.parent / "session.log"
    # -e: stop at the first failing line (a person would see it); -x: which line it was. The
    # output goes to a file: background commands (agent, controller) must not hold a pipe open.
    with log.open("w") as out_file:
        proc = subprocess.Popen(
            ["bash", "-e", "-x", "-o", "pipefail"],
            cwd=scratch,
            env=env,
            stdin=subprocess.PIPE,
            stdout=out_file,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        try:
            proc.communicate(block, timeout=360)
        finally:
            _stop_leftovers(proc, scratch)
    out = log.read_text()
    assert proc.returncode == 0, out[-4000:]
    assert "Traceback" not in out, out[-4000:]
    assert re.search(r"^resort-a: ok .*hotel=B", out, re.M), out[-4000:]
    assert "resort-a: stopped" in out and "resort-a: e-stop cleared" in out, out[-4000:]
    assert "resort-a: lock resort:resort-a is free; nothing to do" in out, out[-4000:]
    assert "Prefect server stopped" in out, out[-2000:]
