"""`fleet provision` with `fleet.alerts` naming a block, and the refusals that change nothing.

Against a real Prefect server; no agents (tests/e2e/test_alerts.py sends real notifications).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from fleet.cli import main
from fleet.core.errors import ProvisionError
from fleet.core.inventory import load_inventory
from fleet.core.provision import provision
from resort_common import names
from tests.support.inventories import write_inventory

pytestmark = pytest.mark.orchestration


@pytest.fixture
def client(prefect_server: Any) -> Any:
    from prefect import get_client

    with get_client(sync_client=True) as c:
        yield c


def _alert_automations(client: Any, inv: Any) -> list[Any]:
    from fleet.core.alerts import is_alert_automation

    return [a for a in client.read_automations() if is_alert_automation(inv, a.name)]


def test_alerts_through_an_existing_notification_block(tmp_path: Path, client: Any) -> None:
    from prefect.blocks.notifications import CustomWebhookNotificationBlock
    from prefect.exceptions import ObjectNotFound

    block_id = CustomWebhookNotificationBlock(
        name="lab hook", url="http://127.0.0.1:9/hook", allow_private_urls=True
    ).save("pa1-lab-hook", overwrite=True)
    path = write_inventory(
        tmp_path / "inv.yaml", "pa1", ["pa1-a"], alerts={"block": "custom-webhook/pa1-lab-hook"}
    )
    inv = load_inventory(path)
    provision(inv)
    automations = _alert_automations(client, inv)
    assert len(automations) == 6
    assert {a.actions[0].block_document_id for a in automations} == {block_id}
    with pytest.raises(ObjectNotFound):  # no webhook block of the fleet's own
        client.read_block_document_by_name(names.alert_block_name(inv), "custom-webhook")


@pytest.mark.parametrize(
    ("alerts", "env", "message"),
    [
        (
            {"block": "custom-webhook/pa2-nowhere"},
            {},
            "fleet.alerts.block: no block custom-webhook/pa2-nowhere on the server",
        ),
        (
            {"block": "secret/pa2-secret"},
            {},
            "fleet.alerts.block: secret/pa2-secret is not a notification block",
        ),
        (
            {"webhook_url_env": "PA2_HOOK"},
            {},
            "fleet.alerts.webhook_url_env: environment variable PA2_HOOK is not set",
        ),
        (
            {"webhook_url_env": "PA2_HOOK"},
            {"PA2_HOOK": "ftp://h/x"},
            "fleet.alerts.webhook_url_env: PA2_HOOK must hold an http(s) URL",
        ),
    ],
    ids=["unknown-block", "not-a-notification-block", "unset-env", "not-http"],
)
def test_bad_alert_destination_fails_before_anything_is_written(
    tmp_path: Path,
    client: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    alerts: dict[str, str],
    env: dict[str, str],
    message: str,
) -> None:
    from prefect.blocks.system import Secret
    from prefect.exceptions import ObjectNotFound

    Secret(value="s3cret").save("pa2-secret", overwrite=True)
    monkeypatch.delenv("PA2_HOOK", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    path = write_inventory(tmp_path / "inv.yaml", "pa2", ["pa2-a"], alerts=alerts)
    with pytest.raises(ProvisionError, match=re.escape(message)):
        provision(load_inventory(path))
    with pytest.raises(ObjectNotFound):  # not even the pool
        client.read_work_pool("pa2-resorts")
    assert main(["provision", "--inventory", str(path)]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_a_changed_token_updates_the_block_and_nothing_else(
    tmp_path: Path, client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PA3_TOKEN", "first")
    alerts = {"webhook_url": "http://127.0.0.1:9/hook", "token_env": "PA3_TOKEN"}
    inv = load_inventory(write_inventory(tmp_path / "inv.yaml", "pa3", ["pa3-a"], alerts=alerts))
    provision(inv)
    monkeypatch.setenv("PA3_TOKEN", "second")
    plan = provision(inv)
    changed = [(c.kind, c.action) for c in plan.changes if c.action != "unchanged"]
    assert changed == [("notification block", "update")]
    doc = client.read_block_document_by_name(names.alert_block_name(inv), "custom-webhook")
    assert doc.data["secrets"] == {"token": "second"}
    assert "second" not in (tmp_path / "inv.yaml").read_text()
