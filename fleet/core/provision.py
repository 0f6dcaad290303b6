"""Provisioning: make the Prefect server hold exactly what the inventory describes.

`provision(inv)` idempotently creates or updates, on the server Prefect's settings point at:

* the device work pool (`inv.fleet.work_pool`, type `names.WORKER_TYPE`; its base job template is
  left to the agents' worker, which fills an empty one on its first hello),
* one work queue per resort (`names.work_queue_name`, limit 1, paused while `active: false`),
* one global concurrency limit per resort (`names.lock_name`, limit 1) and the fleet-wide move
  limit (`names.fleet_limit_name`, limit `max_concurrent_moves`) when the inventory sets one,
* the device subflow deployments of each resort on its queue (`names.device_deployment_name`,
  entrypoints from `names.DEVICE_FLOWS`, parameter schemas from `fleet.core.flow_schemas`),
* the control pool (type "process") and the parent-flow deployments on it,
* the parent-run watchdog automation (`fleet.core.watchdog.automation`): a parent run whose process
  died is marked Crashed instead of staying Running,
* the `fleet-health` schedule (`fleet.health_interval`) and the alerts of `fleet.alerts` (a
  webhook notification block and the automations of `fleet.alerts`), see
  `fleet.core.provision_alerts`.

It returns a `ProvisionPlan` listing each object as create / update / unchanged / delete; with
`dry_run=True` nothing is changed. `prune=True` deletes queues, limits and deployments that follow
the fleet's naming but that the inventory no longer lists (never foreign objects: only queues in
the fleet's pools, deployments of the fleet's flows in those pools, and the locks of resorts that
still had a queue or deployment there).

`drain(inv, resort)` pauses a resort's queue and waits until none of its runs is Pending, Running
or Cancelling; `resume(inv, resort)` unpauses it. A drained queue stays paused across
`provision` runs (its description says so) until `resume`.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from fleet.core.errors import DeviceBusyError, FleetError, ProvisionError, ServerUnavailableError
from fleet.core.flow_schemas import DEVICE_FLOW_SCHEMAS, PARENT_FLOW_SCHEMAS
from fleet.core.provision_alerts import (
    alert_destination,
    ensure_alerts,
    ensure_automation,
    ensure_health_schedule,
)
from fleet.core.provision_diff import changed_fields, detail
from resort_common import names

if TYPE_CHECKING:
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.objects import WorkQueue

    from fleet.core.inventory import Inventory, Resort

__all__ = [
    "Change",
    "DrainResult",
    "ProvisionPlan",
    "drain",
    "provision",
    "resume",
]

logger = logging.getLogger(__name__)

Action = Literal["create", "update", "unchanged", "delete"]
ACTIONS: tuple[Action, ...] = ("create", "update", "unchanged", "delete")

CONTROL_POOL_TYPE = "process"
DEFAULT_QUEUE = "default"
_DRAINED_MARK = "Paused: drained by `fleet drain`"
_INACTIVE_MARK = "Paused: inactive in the inventory."
_ACTIVE_RUN_STATES = ("PENDING", "RUNNING", "CANCELLING")
_PAGE = 200


@dataclass(frozen=True)
class Change:
    """One object of the plan.

    Attributes:
        kind: "work pool", "work queue", "concurrency limit", "deployment", "automation",
            "schedule" or "notification block".
        name: the object's name (deployments as `flow/deployment`).
        action: create, update, unchanged or delete.
        detail: what differs, for updates (`concurrency_limit: None -> 1`), or a note.
    """

    kind: str
    name: str
    action: Action
    detail: str = ""


@dataclass(frozen=True)
class ProvisionPlan:
    """What `provision` did (or, with `dry_run`, would do).

    Attributes:
        fleet: the fleet's name.
        changes: every object, in the order applied.
        dry_run: True when nothing was changed.
    """

    fleet: str
    changes: tuple[Change, ...]
    dry_run: bool

    def count(self, action: Action) -> int:
        """Number of objects with `action`."""
        return sum(c.action == action for c in self.changes)

    @property
    def changed(self) -> bool:
        """True when anything is (or would be) created, updated or deleted."""
        return any(c.action != "unchanged" for c in self.changes)

    def summary(self) -> str:
        """`3 to create, 1 to update, 30 unchanged, 0 to delete` (past tense once applied)."""
        verb = {"create": "created", "update": "updated", "delete": "deleted"}
        parts = []
        for action in ACTIONS:
            n = self.count(action)
            if action == "unchanged":
                parts.append(f"{n} unchanged")
            elif self.dry_run:
                parts.append(f"{n} to {action}")
            else:
                parts.append(f"{n} {verb[action]}")
        return ", ".join(parts)

    def format(self, *, show_unchanged: bool = True) -> str:
        """A table: action, kind, name, detail; then the summary line."""
        rows = [c for c in self.changes if show_unchanged or c.action != "unchanged"]
        width_a = max([len("ACTION"), *(len(c.action) for c in rows)])
        width_k = max([len("KIND"), *(len(c.kind) for c in rows)])
        width_n = max([len("NAME"), *(len(c.name) for c in rows)])
        lines = [f"{'ACTION':<{width_a}}  {'KIND':<{width_k}}  {'NAME':<{width_n}}  DETAIL"]
        for c in rows:
            row = f"{c.action:<{width_a}}  {c.kind:<{width_k}}  {c.name:<{width_n}}  {c.detail}"
            lines.append(row.rstrip())
        prefix = "dry run, nothing changed: " if self.dry_run else ""
        lines.append(f"fleet {self.fleet}: {prefix}{self.summary()}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: fleet, dry_run, counts and the list of changes."""
        return {
            "fleet": self.fleet,
            "dry_run": self.dry_run,
            "counts": {a: self.count(a) for a in ACTIONS},
            "changes": [asdict(c) for c in self.changes],
        }


# --------------------------------------------------------------------------- helpers


def _client() -> SyncPrefectClient:
    from prefect import get_client

    return get_client(sync_client=True)


def _wrap_errors(exc: Exception) -> Exception:
    """Turn Prefect/httpx failures into fleet errors (connection -> ServerUnavailableError)."""
    import httpx
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        return ServerUnavailableError(
            f"no Prefect server at {url}: start one with `fleet server up` or set PREFECT_API_URL"
        )
    if isinstance(exc, httpx.HTTPStatusError) and exc.response.status_code in (401, 403):
        return ServerUnavailableError(
            f"Prefect server at {url} answered HTTP {exc.response.status_code}: "
            "set FLEET_AUTH_FILE or PREFECT_API_AUTH_STRING"
        )
    if isinstance(exc, httpx.HTTPStatusError):
        try:
            reason = exc.response.json().get("detail") or exc.response.json()
        except ValueError:
            reason = exc.response.text
        return ProvisionError(
            f"Prefect server refused {exc.request.method} {exc.request.url.path}: "
            f"HTTP {exc.response.status_code}: {str(reason)[:300]}"
        )
    return ProvisionError(f"provisioning failed: {type(exc).__name__}: {str(exc)[:300]}")


@contextlib.contextmanager
def _translated() -> Iterator[None]:
    """Re-raise Prefect and HTTP failures as fleet errors."""
    import httpx
    from prefect.exceptions import PrefectException

    try:
        yield
    except FleetError:
        raise
    except (OSError, PrefectException, httpx.HTTPError) as exc:
        raise _wrap_errors(exc) from exc


def _queue_description(inv: Inventory, resort: Resort) -> str:
    base = f"Resort {resort.name} of fleet {inv.fleet.name} (managed by `fleet provision`)."
    return base if resort.active else f"{base} {_INACTIVE_MARK}"


@dataclass
class _Provisioner:
    inv: Inventory
    client: SyncPrefectClient
    dry_run: bool
    prune: bool
    changes: list[Change] = field(default_factory=list)

    def note(self, kind: str, name: str, action: Action, detail: str = "") -> None:
        self.changes.append(Change(kind, name, action, detail))
        if action != "unchanged":
            logger.info("%s %s %s %s", action, kind, name, detail)

    # ---- pools

    def pool(self, name: str, pool_type: str, description: str) -> bool:
        """Ensure a work pool; returns True when it exists on the server afterwards."""
        from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
        from prefect.exceptions import ObjectNotFound

        try:
            current = self.client.read_work_pool(name)
        except ObjectNotFound:
            self.note("work pool", name, "create", f"type {pool_type}")
            if not self.dry_run:
                template: dict[str, Any] = {}
                if pool_type == CONTROL_POOL_TYPE:
                    from prefect.workers.process import ProcessWorker

                    template = ProcessWorker.get_default_base_job_template()
                self.client.create_work_pool(
                    WorkPoolCreate(
                        name=name,
                        type=pool_type,
                        description=description,
                        base_job_template=template,
                    )
                )
            return not self.dry_run
        if current.type != pool_type:
            raise ProvisionError(
                f"work pool {name!r} exists with type {current.type!r}, the fleet needs "
                f"{pool_type!r}: delete it (`prefect work-pool delete {name}`) or rename the pool "
                "in the inventory"
            )
        diff = changed_fields({"description": current.description}, {"description": description})
        if diff:
            self.note(
                "work pool", name, "update", detail({"description": current.description}, diff)
            )
            if not self.dry_run:
                self.client.update_work_pool(name, WorkPoolUpdate(**diff))
        else:
            self.note("work pool", name, "unchanged", f"type {pool_type}")
        return True

    # ---- queues

    def _queues(self, pool: str, exists: bool) -> dict[str, WorkQueue]:
        if not exists:
            return {}
        out: dict[str, WorkQueue] = {}
        offset = 0
        while True:
            page = self.client.read_work_queues(work_pool_name=pool, limit=_PAGE, offset=offset)
            out.update({q.name: q for q in page})
            if len(page) < _PAGE:
                return out
            offset += _PAGE

    def queues(self, pool: str, exists: bool) -> dict[str, WorkQueue]:
        """Ensure one queue per resort; returns the queues of resorts no longer listed."""
        current = self._queues(pool, exists)
        for resort in self.inv.resorts:
            qname = names.work_queue_name(resort)
            desired: dict[str, Any] = {
                "concurrency_limit": 1,
                "is_paused": not resort.active,
                "description": _queue_description(self.inv, resort),
            }
            queue = current.get(qname)
            if queue is None:
                self.note("work queue", f"{pool}/{qname}", "create", _paused_note(desired))
                if not self.dry_run:
                    self.client.create_work_queue(name=qname, work_pool_name=pool, **desired)
                continue
            have = {
                "concurrency_limit": queue.concurrency_limit,
                "is_paused": queue.is_paused,
                "description": queue.description or "",
            }
            if resort.active and queue.is_paused and _DRAINED_MARK in have["description"]:
                # Drained by an operator: provisioning does not undo that, `fleet resume` does.
                desired["is_paused"] = True
                desired["description"] = have["description"]
            diff = changed_fields(have, desired)
            if diff:
                self.note("work queue", f"{pool}/{qname}", "update", detail(have, diff))
                if not self.dry_run:
                    self.client.update_work_queue(id=queue.id, **diff)
            else:
                self.note("work queue", f"{pool}/{qname}", "unchanged", _paused_note(desired))
        wanted = {names.work_queue_name(r) for r in self.inv.resorts} | {DEFAULT_QUEUE}
        return {q: current[q] for q in current if q not in wanted}

    def prune_queues(self, pool: str, dropped: dict[str, WorkQueue]) -> None:
        """Delete dropped resorts' queues (after their deployments: deleting a queue first
        would take the deployments with it unreported)."""
        for qname in sorted(dropped):
            self.note("work queue", f"{pool}/{qname}", "delete", "not in the inventory")
            if not self.dry_run:
                self.client.delete_work_queue_by_id(dropped[qname].id)

    # ---- global concurrency limits

    def _limits(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        offset = 0
        while True:
            page = self.client.read_global_concurrency_limits(limit=_PAGE, offset=offset)
            out.update({gcl.name: gcl for gcl in page})
            if len(page) < _PAGE:
                return out
            offset += _PAGE

    def limits(self, dropped_resorts: set[str]) -> None:
        from prefect.client.schemas.actions import (
            GlobalConcurrencyLimitCreate,
            GlobalConcurrencyLimitUpdate,
        )

        current = self._limits()
        desired: dict[str, int] = {names.lock_name(r): 1 for r in self.inv.resorts}
        fleet_limit = names.fleet_limit_name(self.inv)
        if self.inv.fleet.max_concurrent_moves is not None:
            desired[fleet_limit] = int(self.inv.fleet.max_concurrent_moves)
        for lname, limit in desired.items():
            gcl = current.get(lname)
            if gcl is None:
                self.note("concurrency limit", lname, "create", f"limit {limit}")
                if not self.dry_run:
                    self.client.create_global_concurrency_limit(
                        GlobalConcurrencyLimitCreate(name=lname, limit=limit, active=True)
                    )
                continue
            have = {"limit": gcl.limit, "active": gcl.active}
            diff = changed_fields(have, {"limit": limit, "active": True})
            if diff:
                self.note("concurrency limit", lname, "update", detail(have, diff))
                if not self.dry_run:
                    self.client.update_global_concurrency_limit(
                        lname, GlobalConcurrencyLimitUpdate(**diff)
                    )
            else:
                self.note("concurrency limit", lname, "unchanged", f"limit {limit}")
        if not self.prune:
            return
        stale = {names.lock_name(r) for r in dropped_resorts}
        if fleet_limit not in desired:
            stale.add(fleet_limit)
        for lname in sorted(stale - set(desired)):
            if lname in current:
                self.note("concurrency limit", lname, "delete", "not in the inventory")
                if not self.dry_run:
                    self.client.delete_global_concurrency_limit_by_name(lname)

    # ---- deployments

    def _deployments(self, flow_names: list[str]) -> list[tuple[str, Any]]:
        """Existing deployments of the given flows as (flow name, deployment)."""
        from prefect.client.schemas.filters import FlowFilter, FlowFilterName

        flow_filter = FlowFilter(name=FlowFilterName(any_=flow_names))
        flows = {f.id: f.name for f in self.client.read_flows(flow_filter=flow_filter, limit=_PAGE)}
        if not flows:
            return []
        out: list[tuple[str, Any]] = []
        offset = 0
        while True:
            page = self.client.read_deployments(flow_filter=flow_filter, limit=_PAGE, offset=offset)
            out.extend((flows[d.flow_id], d) for d in page if d.flow_id in flows)
            if len(page) < _PAGE:
                return out
            offset += _PAGE

    def deployments(self) -> set[str]:
        """Ensure device and parent deployments; returns resort names of dropped deployments."""
        from prefect.client.schemas.actions import DeploymentUpdate

        inv = self.inv
        device_pool, control_pool = inv.fleet.work_pool, names.control_pool_name(inv)
        desired: dict[tuple[str, str], dict[str, Any]] = {}
        for resort in inv.resorts:
            for flow_name, entrypoint in names.DEVICE_FLOWS.items():
                desired[(flow_name, resort.name)] = {
                    "work_pool_name": device_pool,
                    "work_queue_name": names.work_queue_name(resort),
                    "entrypoint": entrypoint,
                    "parameters": {},
                    "parameter_openapi_schema": DEVICE_FLOW_SCHEMAS[flow_name],
                    "enforce_parameter_schema": True,
                    "tags": [names.fleet_tag(inv), f"resort:{resort.name}"],
                    "description": (
                        f"Device subflow {flow_name} on resort {resort.name} "
                        "(managed by `fleet provision`)."
                    ),
                }
        for flow_name, entrypoint in names.PARENT_FLOWS.items():
            schema = PARENT_FLOW_SCHEMAS.get(flow_name)
            full = names.parent_deployment_name(flow_name, inv)
            has_inventory = schema is not None and "inventory" in schema["properties"]
            desired[(flow_name, full.split("/", 1)[1])] = {
                "work_pool_name": control_pool,
                "work_queue_name": DEFAULT_QUEUE,
                "entrypoint": entrypoint,
                # Runs started from the UI or by automations find the provisioned inventory.
                "parameters": {"inventory": str(inv.path)} if has_inventory else {},
                "parameter_openapi_schema": schema or {"type": "object", "properties": {}},
                "enforce_parameter_schema": schema is not None,
                "tags": [names.fleet_tag(inv)],
                "description": f"Parent flow {flow_name} (managed by `fleet provision`).",
            }
        flow_names = [*names.DEVICE_FLOWS, *names.PARENT_FLOWS]
        existing = {(f, d.name): d for f, d in self._deployments(flow_names)}
        flow_ids: dict[str, Any] = {}
        for (flow_name, dname), want in desired.items():
            label = f"{flow_name}/{dname}"
            dep = existing.get((flow_name, dname))
            if dep is None:
                self.note(
                    "deployment",
                    label,
                    "create",
                    f"on {want['work_pool_name']}/{want['work_queue_name']}",
                )
                if not self.dry_run:
                    if flow_name not in flow_ids:
                        flow_ids[flow_name] = self.client.create_flow_from_name(flow_name)
                    self.client.create_deployment(
                        flow_id=flow_ids[flow_name], name=dname, paused=False, **want
                    )
                continue
            have = {k: getattr(dep, k) for k in want}
            have["tags"] = sorted(have["tags"] or [])
            want_cmp = {**want, "tags": sorted(want["tags"])}
            diff = changed_fields(have, want_cmp)
            if diff:
                self.note("deployment", label, "update", detail(have, diff))
                if not self.dry_run:
                    self.client.update_deployment(dep.id, DeploymentUpdate(**diff))
            else:
                self.note("deployment", label, "unchanged", f"on {want['work_queue_name']}")
        ours = {device_pool, control_pool}
        stale = [
            (key, dep)
            for key, dep in existing.items()
            if key not in desired and dep.work_pool_name in ours
        ]
        dropped = {dname for (f, dname), dep in stale if dep.work_pool_name == device_pool}
        if self.prune:
            for (flow_name, dname), dep in sorted(stale, key=lambda kv: kv[0]):
                self.note("deployment", f"{flow_name}/{dname}", "delete", "not in the inventory")
                if not self.dry_run:
                    self.client.delete_deployment(dep.id)
        return dropped

    # ---- the parent-run watchdog

    def watchdog(self) -> None:
        """Ensure the fleet's parent-run watchdog automation (one; extra copies are removed)."""
        from fleet.core.watchdog import automation, window

        note = f"Crashed after {window(self.inv.fleet.parent_heartbeat):g} s without heartbeat"
        ensure_automation(self, automation(self.inv), note)


def _paused_note(desired: dict[str, Any]) -> str:
    return "paused" if desired["is_paused"] else "limit 1"


# --------------------------------------------------------------------------- public API


def provision(inv: Inventory, *, dry_run: bool = False, prune: bool = False) -> ProvisionPlan:
    """Make the server hold the inventory's pools, queues, limits, deployments and watchdog.

    Uses the Prefect API the current settings point at (the CLI wraps this in
    `fleet.core.server.api_settings`).

    Args:
        inv: the loaded inventory.
        dry_run: only compute the plan.
        prune: also delete fleet objects the inventory no longer lists.

    Returns:
        The plan: every object with create / update / unchanged / delete.

    Raises:
        ServerUnavailableError: the server does not answer or refuses our credentials.
        ProvisionError: the server refused a change (e.g. a pool exists with another type).
    """
    with _translated(), _client() as client:
        destination = alert_destination(inv, client)  # bad input fails before any write
        p = _Provisioner(inv, client, dry_run, prune)
        fleet = inv.fleet.name
        device_ok = p.pool(
            inv.fleet.work_pool,
            names.WORKER_TYPE,
            f"Plate-resort agents of fleet {fleet} (managed by `fleet provision`).",
        )
        p.pool(
            names.control_pool_name(inv),
            CONTROL_POOL_TYPE,
            f"Parent flows of fleet {fleet} (managed by `fleet provision`).",
        )
        dropped_queues = p.queues(inv.fleet.work_pool, device_ok)
        dropped = p.deployments() | set(dropped_queues)
        if prune:
            p.prune_queues(inv.fleet.work_pool, dropped_queues)
        p.limits(dropped)
        p.watchdog()
        ensure_health_schedule(p)
        ensure_alerts(p, destination)
    return ProvisionPlan(inv.fleet.name, tuple(p.changes), dry_run)


# --------------------------------------------------------------------------- drain / resume


@dataclass(frozen=True)
class DrainResult:
    """Outcome of `drain` / `resume`.

    Attributes:
        resort: the resort's name.
        queue: `pool/queue`.
        paused: the queue's state afterwards.
        active_runs: runs still Pending/Running/Cancelling on the queue (0 after a drain).
        scheduled_runs: runs waiting on the queue (they start after `resume`).
        waited: seconds spent waiting for active runs to finish.
    """

    resort: str
    queue: str
    paused: bool
    active_runs: int
    scheduled_runs: int
    waited: float


def _read_queue(client: SyncPrefectClient, inv: Inventory, resort: Resort) -> WorkQueue:
    from prefect.exceptions import ObjectNotFound

    qname = names.work_queue_name(resort)
    try:
        return client.read_work_queue_by_name(qname, work_pool_name=inv.fleet.work_pool)
    except ObjectNotFound as exc:
        raise ProvisionError(
            f"resort {resort.name}: no work queue {inv.fleet.work_pool}/{qname} on the server; "
            "run `fleet provision` first"
        ) from exc


def _runs(client: SyncPrefectClient, inv: Inventory, queue: str, states: tuple[str, ...]) -> list:
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
        FlowRunFilterWorkQueueName,
        WorkPoolFilter,
        WorkPoolFilterName,
    )
    from prefect.client.schemas.objects import StateType

    return client.read_flow_runs(
        flow_run_filter=FlowRunFilter(
            state=FlowRunFilterState(
                type=FlowRunFilterStateType(any_=[StateType(s) for s in states])
            ),
            work_queue_name=FlowRunFilterWorkQueueName(any_=[queue]),
        ),
        work_pool_filter=WorkPoolFilter(name=WorkPoolFilterName(any_=[inv.fleet.work_pool])),
        limit=_PAGE,
    )


def _count_scheduled(client: SyncPrefectClient, inv: Inventory, queue: str) -> int:
    return len(_runs(client, inv, queue, ("SCHEDULED",)))


def drain(
    inv: Inventory, resort_name: str, *, timeout: float = 300.0, poll: float = 0.5
) -> DrainResult:
    """Pause a resort's queue and wait until no run on it is Pending, Running or Cancelling.

    Runs already Scheduled stay queued and start after `resume`.

    Raises:
        DeviceSelectionError: unknown resort.
        ProvisionError: the queue does not exist (not provisioned).
        DeviceBusyError: runs still active after `timeout` s (the queue stays paused).
    """
    resort = inv.resort(resort_name)
    qname = names.work_queue_name(resort)
    label = f"{inv.fleet.work_pool}/{qname}"
    started = time.monotonic()
    with _translated(), _client() as client:
        queue = _read_queue(client, inv, resort)
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        base = (queue.description or "").split(" Paused:", 1)[0]
        client.update_work_queue(
            id=queue.id, is_paused=True, description=f"{base} {_DRAINED_MARK} at {stamp}.".strip()
        )
        while True:
            active = _runs(client, inv, qname, _ACTIVE_RUN_STATES)
            if not active:
                break
            if time.monotonic() - started >= timeout:
                first = active[0]
                since = first.start_time or first.expected_start_time
                raise DeviceBusyError(
                    f"resort {resort.name}: {len(active)} run(s) still active on {label} after "
                    f"{timeout:g} s (e.g. {first.name} {first.id} "
                    f"{first.state_name or first.state_type} since {since}); the queue stays "
                    "paused"
                )
            time.sleep(poll)
        scheduled = _count_scheduled(client, inv, qname)
    return DrainResult(resort.name, label, True, 0, scheduled, time.monotonic() - started)


def resume(inv: Inventory, resort_name: str) -> DrainResult:
    """Unpause a resort's queue (refused for a resort that is inactive in the inventory).

    Raises:
        DeviceSelectionError: unknown resort.
        ProvisionError: the queue does not exist, or the resort is `active: false`.
    """
    resort = inv.resort(resort_name)
    if not resort.active:
        raise ProvisionError(
            f"resort {resort.name} is inactive in {inv.path}: set `active: true` and run "
            "`fleet provision`"
        )
    qname = names.work_queue_name(resort)
    with _translated(), _client() as client:
        queue = _read_queue(client, inv, resort)
        client.update_work_queue(
            id=queue.id, is_paused=False, description=_queue_description(inv, resort)
        )
        active = len(_runs(client, inv, qname, _ACTIVE_RUN_STATES))
        scheduled = _count_scheduled(client, inv, qname)
    return DrainResult(resort.name, f"{inv.fleet.work_pool}/{qname}", False, active, scheduled, 0.0)
