"""The `plate-resort` Prefect worker: device subflows run in the agent process, one at a time.

Registered with Prefect through the `prefect.collections` entry point, which imports this package
(`ResortWorker.type == "plate-resort"`).

* `job`: the job configuration and variables, and the worker's cache of deployment/flow reads.
* `catalog`: the device flows, imported once by their deployment entrypoint.
* `device_thread`: the one thread that runs flows with Prefect's engine.
* `pickup`: event-driven pickup and claiming of the queue's runs, and the fallback poll.
* `orphans`: runs a killed predecessor left non-final are marked final at start-up.
* `run_states`: the final states the worker forces (after the engine, or instead of a run).
* `resort_worker`: `ResortWorker` itself (run, cancel, serve, stop, drain).

Prefect's private names are used only in `device_agent.prefect_adapter`.
"""

from __future__ import annotations

from device_agent.worker.catalog import FlowCatalog, load_flow
from device_agent.worker.device_thread import DeviceThread
from device_agent.worker.job import (
    ApiCache,
    ResortJobConfiguration,
    ResortVariables,
    ResortWorkerResult,
)
from device_agent.worker.resort_worker import ResortWorker

__all__ = [
    "ApiCache",
    "DeviceThread",
    "FlowCatalog",
    "ResortJobConfiguration",
    "ResortVariables",
    "ResortWorker",
    "ResortWorkerResult",
    "load_flow",
]
