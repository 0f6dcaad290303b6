"""What watches the fleet, as `fleet provision` keeps it: automations, alerts, health schedule.

Each step works with the run's `fleet.core.provision.plan.Provisioner` (`p`: the inventory, the
sync Prefect client, `dry_run` and `note(kind, name, action, detail)`):

* `ensure_automation(p, want, note)`: one automation by name, created, updated or left alone
  (extra copies are removed);
* `ensure_watchdog(p)`: the fleet's parent-run watchdog automation (`fleet.core.watchdog`): a
  parent run whose process died is marked Crashed instead of staying Running;
* `alert_destination(inv, client)`: resolves `fleet.alerts` before anything is written (missing
  environment variables, an unknown block are one-line `ProvisionError`s naming the key);
* `ensure_alerts(p, destination)`: the webhook block and the automations of `fleet.alerts`,
  or their removal when the key is gone;
* `ensure_health_schedule(p)`: the interval schedule of the fleet's `fleet-health` deployment
  (`fleet.health_interval`), or its removal.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from uuid import UUID

from fleet.core import watchdog
from fleet.core.alerts import automations, is_alert_automation
from fleet.core.errors import ProvisionError
from fleet.core.provision.diff import automation_fields, changed_fields, detail
from resort_common import names

if TYPE_CHECKING:
    from prefect.client.orchestration import SyncPrefectClient

    from fleet.core.inventory import Inventory
    from fleet.core.provision.plan import Provisioner

__all__ = [
    "WEBHOOK_BLOCK_TYPE",
    "Destination",
    "alert_destination",
    "ensure_alerts",
    "ensure_automation",
    "ensure_health_schedule",
    "ensure_watchdog",
]

#: Prefect's block type of the webhook `fleet provision` creates for `alerts.webhook_url`.
WEBHOOK_BLOCK_TYPE = "custom-webhook"


def ensure_automation(p: Provisioner, want: Any, note: str) -> None:
    """Ensure one automation named `want.name` equal to `want` (extra copies are removed)."""
    desired = automation_fields(want)
    current = sorted(p.client.read_automations_by_name(want.name), key=lambda a: str(a.id))
    if not current:
        p.note("automation", want.name, "create", note)
        if not p.dry_run:
            p.client.create_automation(want)
        return
    first, *extra = current
    have = automation_fields(first)
    diff = changed_fields(have, desired)
    if diff:
        p.note("automation", want.name, "update", detail(have, diff))
        if not p.dry_run:
            p.client.update_automation(first.id, want)
    else:
        p.note("automation", want.name, "unchanged", note)
    for duplicate in extra:
        p.note("automation", want.name, "delete", f"duplicate {duplicate.id}")
        if not p.dry_run:
            p.client.delete_automation(duplicate.id)


def ensure_watchdog(p: Provisioner) -> None:
    """Ensure the fleet's parent-run watchdog automation (one; extra copies are removed)."""
    note = f"Crashed after {watchdog.window(p.inv.fleet.parent_heartbeat):g} s without heartbeat"
    ensure_automation(p, watchdog.automation(p.inv), note)


# --------------------------------------------------------------------------- alerts


@dataclass(frozen=True)
class Destination:
    """Where the fleet's notifications go: a webhook to keep as a block, or an existing block."""

    label: str  # for the plan: the URL's host, or the block reference
    url: str | None = None
    token: str | None = None
    block_document_id: UUID | None = None


def _env(key: str, variable: str) -> str:
    value = os.environ.get(variable, "")
    if not value:
        raise ProvisionError(f"fleet.alerts.{key}: environment variable {variable} is not set")
    return value


def alert_destination(inv: Inventory, client: SyncPrefectClient) -> Destination | None:
    """Resolve `fleet.alerts` (None without it); nothing is written.

    Raises:
        ProvisionError: a named environment variable is unset, the URL it holds is not http(s),
            or `block` names no notification block on the server.
    """
    from urllib.parse import urlsplit

    from prefect.exceptions import ObjectNotFound

    alerts = inv.fleet.alerts
    if alerts is None:
        return None
    if alerts.block:
        slug, name = alerts.block.split("/", 1)
        try:
            doc = client.read_block_document_by_name(name, block_type_slug=slug)
        except ObjectNotFound:
            raise ProvisionError(
                f"fleet.alerts.block: no block {alerts.block} on the server (create it in the "
                "Prefect UI under Blocks, or `prefect block create`)"
            ) from None
        capabilities = doc.block_schema.capabilities if doc.block_schema else []
        if "notify" not in capabilities:
            raise ProvisionError(
                f"fleet.alerts.block: {alerts.block} is not a notification block "
                "(Slack, e-mail, webhook, ...)"
            )
        return Destination(alerts.block, block_document_id=doc.id)
    if alerts.webhook_url_env:
        url = _env("webhook_url_env", alerts.webhook_url_env)
        if urlsplit(url).scheme not in ("http", "https"):
            raise ProvisionError(
                f"fleet.alerts.webhook_url_env: {alerts.webhook_url_env} must hold an http(s) URL"
            )
    else:
        url = str(alerts.webhook_url)
    token = _env("token_env", alerts.token_env) if alerts.token_env else None
    host = urlsplit(url).hostname or "?"
    return Destination(f"webhook on {host}", url=url, token=token)


def _webhook_block(inv: Inventory, dest: Destination) -> Any:
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    return CustomWebhookNotificationBlock(
        name=f"fleet {inv.fleet.name} alerts",
        url=str(dest.url),
        method="POST",
        json_data={"fleet": inv.fleet.name, "subject": "{{subject}}", "body": "{{body}}"},
        headers={"Authorization": "Bearer {{token}}"} if dest.token else None,
        secrets={"token": dest.token} if dest.token else {},
        # the fleet's own inventory names the URL; lab alerting often lives on the LAN
        allow_private_urls=True,
    )


def _block_fields(block: Any) -> dict[str, Any]:
    secrets = block.secrets.get_secret_value() if block.secrets else {}
    return {
        "url": block.url,
        "json_data": block.json_data,
        "headers": block.headers,
        "secrets": {k: str(v) for k, v in secrets.items()},
        "allow_private_urls": block.allow_private_urls,
    }


def _ensure_webhook_block(p: Provisioner, dest: Destination) -> UUID | None:
    """The webhook block's document id (None in a dry run that would create it)."""
    from prefect.blocks.notifications import CustomWebhookNotificationBlock
    from prefect.exceptions import ObjectNotFound

    name = names.alert_block_name(p.inv)
    want = _webhook_block(p.inv, dest)
    try:
        doc = p.client.read_block_document_by_name(
            name, block_type_slug=WEBHOOK_BLOCK_TYPE, include_secrets=True
        )
    except ObjectNotFound:
        doc = None
    if doc is None:
        p.note("notification block", name, "create", dest.label)
    else:
        have = _block_fields(CustomWebhookNotificationBlock.model_validate(doc.data))
        diff = changed_fields(have, _block_fields(want))
        if not diff:
            p.note("notification block", name, "unchanged", dest.label)
            return doc.id
        p.note("notification block", name, "update", ", ".join(sorted(diff)) + " changed")
    if p.dry_run:
        return doc.id if doc is not None else None
    return want.save(name, overwrite=True)


def _drop_webhook_block(p: Provisioner) -> None:
    from prefect.exceptions import ObjectNotFound

    name = names.alert_block_name(p.inv)
    try:
        doc = p.client.read_block_document_by_name(name, block_type_slug=WEBHOOK_BLOCK_TYPE)
    except ObjectNotFound:
        return
    p.note("notification block", name, "delete", "fleet.alerts removed")
    if not p.dry_run:
        p.client.delete_block_document(doc.id)


def ensure_alerts(p: Provisioner, dest: Destination | None) -> None:
    """Ensure the fleet's alert automations and webhook block, or remove them without alerts."""
    inv = p.inv
    wanted: set[str] = set()
    if dest is not None:
        block_id = dest.block_document_id
        if block_id is None:
            block_id = _ensure_webhook_block(p, dest)
        else:
            _drop_webhook_block(p)
        # a dry run that would create the block compares against a placeholder id
        for want in automations(inv, block_id or UUID(int=0)):
            wanted.add(want.name)
            ensure_automation(p, want, f"notifies via {dest.label}")
    else:
        _drop_webhook_block(p)
    for automation in p.client.read_automations():
        if is_alert_automation(inv, automation.name) and automation.name not in wanted:
            p.note("automation", automation.name, "delete", "not in fleet.alerts")
            if not p.dry_run:
                p.client.delete_automation(automation.id)


# --------------------------------------------------------------------------- health schedule


def ensure_health_schedule(p: Provisioner) -> None:
    """Ensure the `fleet-health` deployment runs every `fleet.health_interval` s (or never).

    The schedules are written through a deployment update, which the server's scheduler notices
    within seconds (a schedule added on its own waits for the scheduler's next full pass).
    """
    from prefect.client.schemas.actions import DeploymentScheduleUpdate, DeploymentUpdate
    from prefect.client.schemas.schedules import IntervalSchedule
    from prefect.exceptions import ObjectNotFound

    inv = p.inv
    full = names.parent_deployment_name("fleet-health", inv)
    label = f"{full} schedule"
    seconds = inv.fleet.health_interval
    try:
        deployment = p.client.read_deployment_by_name(full)
    except ObjectNotFound:
        deployment = None  # a dry run that would create it
    current = p.client.read_deployment_schedules(deployment.id) if deployment else []
    have = [getattr(s.schedule, "interval", None) for s in current if s.active]
    want = [timedelta(seconds=seconds)] if seconds else []
    if have == want and len(current) == len(want):
        if seconds:
            p.note("schedule", label, "unchanged", f"every {seconds:g} s")
        return
    if seconds:
        p.note("schedule", label, "update" if current else "create", f"every {seconds:g} s")
    else:
        p.note("schedule", label, "delete", "fleet.health_interval removed")
    if p.dry_run or deployment is None:
        return
    schedules = [
        DeploymentScheduleUpdate(schedule=IntervalSchedule(interval=interval), active=True)
        for interval in want
    ]
    p.client.update_deployment(deployment.id, DeploymentUpdate(schedules=schedules))
