"""Provisioning: make the Prefect server hold exactly what the inventory describes.

`provision(inv, dry_run=..., prune=...) -> ProvisionPlan` (`apply`), `drain` / `resume` of one
resort's queue (`draining`). The steps: `work_pools` (pools, queues, limits), `deployments`,
`watching` (watchdog, alerts, health schedule), `prune`; `plan` holds the plan of changes.
"""

from __future__ import annotations

from fleet.core.provision.apply import provision
from fleet.core.provision.draining import DrainResult, drain, resume
from fleet.core.provision.plan import Change, ProvisionPlan

__all__ = [
    "Change",
    "DrainResult",
    "ProvisionPlan",
    "drain",
    "provision",
    "resume",
]
