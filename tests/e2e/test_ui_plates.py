"""The plate registry in the real Prefect UI, driven in headless Chromium like a person would.

A server of this module's own with the UI on (the session's server runs without it), fleet `ui`:
one instant emulated resort `ui-a` with its registry in an SQLite file of the test's own.

UI selectors used (Prefect 3.9.1's UI; a Prefect upgrade that breaks one fails here):
- artifacts list: a card link `a[href="/artifacts/key/<key>"]`;
- artifact key page: version links `.artifact-timeline a[href^="/artifacts/artifact/"]`, newest
  first; an artifact's page shows a table artifact as an HTML `table` (`th` header, `td` cells);
- flow run page: the state badge `.page-heading-flow-run__meta .state-badge`, a button whose
  text is `Resume`; its dialog `.p-modal` holds one `select` per `Literal` field of the run input
  (the `decision` field) and a `Submit` button.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from resort_common import names
from tests.support.browser import headless_chromium, screenshot_on_failure
from tests.support.cli import in_background, run_fleet
from tests.support.fleet_harness import Fleet
from tests.support.plates import start_plate_fleet
from tests.support.prefect_server import PrefectServer, prefect_pointed_at, start_prefect_server
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.orchestration, pytest.mark.browser]

#: seconds the browser waits for a DOM condition (the UI polls the API every few seconds)
UI_TIMEOUT = 30.0


@pytest.fixture(scope="module")
def ui_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    """A Prefect server that serves the UI; this process points at it for the module."""
    server = start_prefect_server(Path(tmp_path_factory.mktemp("ui-server")), ui=True)
    try:
        with prefect_pointed_at(server):
            yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def fleet(ui_server: PrefectServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    lab = start_plate_fleet(Path(tmp_path_factory.mktemp("ui-fleet")), "ui", 1)
    try:
        yield lab
    finally:
        lab.stop()


@pytest.fixture
def chrome(tmp_path: Path) -> Iterator[Any]:
    """Headless Chromium; a test's steps run under `screenshot_on_failure(chrome, tmp_path)`."""
    with headless_chromium(tmp_path / "chromium-profile") as driver:
        yield driver


def ui_url(server: PrefectServer, path: str) -> str:
    return server.api_url.removesuffix("/api") + path


def cli(fleet: Fleet, *argv: str) -> tuple[int, str, str]:
    """Run `fleet plates ...`; its exit code, stdout and stderr."""
    return run_fleet(["plates", *argv, "--inventory", str(fleet.inventory_path)])


def where(fleet: Fleet, plate: str) -> dict[str, Any] | None:
    code, out, _ = cli(fleet, "where", plate, "--json")
    return json.loads(out) if code == 0 else None


def paused_handoff_run(fleet: Fleet, plate: str) -> str | None:
    """The id of `plate`'s hand-off run once it is paused for its decision, else None."""
    from prefect import get_client

    found = where(fleet, plate)
    if not found or found["state"] != "reserved":
        return None
    run_id = UUID(json.loads(cli(fleet, "history", plate, "--json")[1])[-1]["flow_run_id"])
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(run_id).state
    return str(run_id) if state is not None and state.is_paused() else None


def store(fleet: Fleet, plate: str, resort: str) -> tuple[threading.Thread, dict[str, Any], str]:
    """Start `fleet plates store` in the background; wait until its run is paused (its id)."""
    thread, outcome = in_background(
        lambda: cli(fleet, "store", plate, "--resort", resort, "--json")
    )
    run_id = wait_for(lambda: paused_handoff_run(fleet, plate), 60, 0.2, f"{plate} store paused")
    return thread, outcome, str(run_id)


def finished(thread: threading.Thread, outcome: dict[str, Any]) -> dict[str, Any]:
    """The stored room the background `store` printed, once it exited 0."""
    thread.join(60)
    assert not thread.is_alive(), "store did not return"
    code, out, err = outcome["result"]
    assert code == 0, err
    return dict(json.loads(out))


def table_rows(chrome: Any) -> list[dict[str, str]]:
    """The table on the page as a list of {column header: cell text}."""
    from selenium.webdriver.common.by import By

    headers = [th.text.strip() for th in chrome.find_elements(By.CSS_SELECTOR, "table thead th")]
    return [
        dict(
            zip(
                headers,
                (td.text.strip() for td in tr.find_elements(By.TAG_NAME, "td")),
                strict=True,
            )
        )
        for tr in chrome.find_elements(By.CSS_SELECTOR, "table tbody tr")
    ]


def test_the_occupancy_artifact_shows_a_stored_plate(
    ui_server: PrefectServer, fleet: Fleet, chrome: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    thread, outcome, _ = store(fleet, "P1", "ui-a")
    assert cli(fleet, "confirm", "P1")[0] == 0
    room = finished(thread, outcome)
    assert room["state"] == "occupied"

    wait = WebDriverWait(chrome, UI_TIMEOUT)
    key = names.occupancy_artifact_key("ui-a")
    with screenshot_on_failure(chrome, tmp_path):
        chrome.get(ui_url(ui_server, "/artifacts"))
        card = (By.CSS_SELECTOR, f'a[href="/artifacts/key/{key}"]')
        wait.until(ec.element_to_be_clickable(card)).click()
        newest = (By.CSS_SELECTOR, '.artifact-timeline a[href^="/artifacts/artifact/"]')
        wait.until(ec.element_to_be_clickable(newest)).click()
        wait.until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, "table tbody"), "P1"))
        rows = {row["room"]: row for row in table_rows(chrome)}
        assert rows[str(room["room"])][room["hotel"]] == "P1"
        assert [cell for row in rows.values() for cell in row.values()].count("P1") == 1


def test_a_waiting_store_is_confirmed_through_the_resume_form(
    ui_server: PrefectServer, fleet: Fleet, chrome: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import Select, WebDriverWait

    thread, outcome, run_id = store(fleet, "P2", "ui-a")
    wait = WebDriverWait(chrome, UI_TIMEOUT)
    badge = (By.CSS_SELECTOR, ".page-heading-flow-run__meta .state-badge")
    with screenshot_on_failure(chrome, tmp_path):
        chrome.get(ui_url(ui_server, f"/runs/flow-run/{run_id}"))
        wait.until(ec.text_to_be_present_in_element(badge, "Paused"))
        resume = (By.XPATH, "//button[normalize-space(.)='Resume']")
        wait.until(ec.element_to_be_clickable(resume)).click()
        form = (By.CSS_SELECTOR, ".p-modal select")
        Select(wait.until(ec.visibility_of_element_located(form))).select_by_visible_text("confirm")
        submit = (By.XPATH, "//*[contains(@class, 'p-modal')]//button[normalize-space(.)='Submit']")
        wait.until(ec.element_to_be_clickable(submit)).click()
        wait.until(ec.invisibility_of_element_located((By.CSS_SELECTOR, ".p-modal")))

        room = finished(thread, outcome)
        assert (room["plate"], room["state"]) == ("P2", "occupied")
        found = where(fleet, "P2")
        assert found is not None
        assert (found["resort"], found["hotel"], found["room"], found["state"]) == (
            "ui-a",
            room["hotel"],
            room["room"],
            "occupied",
        )
        wait.until(ec.text_to_be_present_in_element(badge, "Completed"))
