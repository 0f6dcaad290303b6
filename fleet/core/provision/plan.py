"""The plan of a provisioning run: each object's `Change`, the `ProvisionPlan`, and its printing.

`Provisioner` is what every step of `provision` works with: the inventory, the Prefect client,
whether it is a dry run, and the changes noted so far (in the order applied).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from prefect.client.orchestration import SyncPrefectClient

    from fleet.core.inventory import Inventory

__all__ = ["ACTIONS", "Action", "Change", "ProvisionPlan", "Provisioner"]

logger = logging.getLogger(__name__)

Action = Literal["create", "update", "unchanged", "delete"]
ACTIONS: tuple[Action, ...] = ("create", "update", "unchanged", "delete")


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


@dataclass
class Provisioner:
    """The state the steps of one `provision` run share.

    Attributes:
        inv: the inventory to provision.
        client: the sync Prefect client (open for the whole run).
        dry_run: True when the steps only note what they would change.
        changes: every object noted so far, in the order applied.
    """

    inv: Inventory
    client: SyncPrefectClient
    dry_run: bool
    changes: list[Change] = field(default_factory=list)

    def note(self, kind: str, name: str, action: Action, detail: str = "") -> None:
        """Record one object of the plan (and log it when it changes)."""
        self.changes.append(Change(kind, name, action, detail))
        if action != "unchanged":
            logger.info("%s %s %s %s", action, kind, name, detail)
