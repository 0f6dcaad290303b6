"""The device flows a worker runs: imported once, by the entrypoint stored on the deployment.

Flows are imported by their entrypoint string (``"flows.device:activate_hotel"``), never with
`load_flow_from_flow_run` (that would run pull steps inside the long-lived agent process).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prefect.client.orchestration import PrefectClient
    from prefect.flows import Flow

    from device_agent.worker.job import ResortJobConfiguration

__all__ = ["FlowCatalog", "load_flow"]

logger = logging.getLogger(__name__)


def load_flow(entrypoint: str) -> Flow[Any, Any]:
    """Import the flow named by `entrypoint` (``"pkg.module:attr"`` or ``"pkg/module.py:attr"``).

    Raises:
        ValueError: malformed entrypoint, module missing, or the object is not a flow.
    """
    from prefect.flows import Flow

    module_name, sep, attr = entrypoint.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"entrypoint {entrypoint!r} is not of the form 'module:flow'")
    if module_name.endswith(".py"):
        module_name = module_name[:-3].lstrip("./").replace("/", ".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"entrypoint {entrypoint!r}: cannot import {module_name}: {exc}") from exc
    obj = getattr(module, attr, None)
    if not isinstance(obj, Flow):
        raise ValueError(f"entrypoint {entrypoint!r} does not name a Prefect flow")
    return obj.with_options(persist_result=False)


class FlowCatalog:
    """The flows a worker has imported, by entrypoint, and the entrypoints that failed.

    Args:
        entrypoints: entrypoints to import at start-up besides those of the queue's deployments.
    """

    def __init__(self, entrypoints: Iterable[str] = ()) -> None:
        self._extra_entrypoints = tuple(entrypoints)
        self._by_entrypoint: dict[str, Flow[Any, Any]] = {}
        #: the queues' deployments as last listed by `load`
        self.deployments: list[Any] = []
        self.errors: dict[str, str] = {}

    async def load(
        self, client: PrefectClient, work_pool_name: str, work_queues: Iterable[str]
    ) -> dict[str, Flow[Any, Any]]:
        """Import the flows of the queues' deployments (and the extra entrypoints) once."""
        from prefect.client.schemas.filters import (
            WorkPoolFilter,
            WorkPoolFilterName,
            WorkQueueFilter,
            WorkQueueFilterName,
        )
        from prefect.client.schemas.sorting import DeploymentSort

        queues = sorted(work_queues)
        entrypoints = list(self._extra_entrypoints)
        try:
            deployments = await client.read_deployments(
                limit=200,
                sort=DeploymentSort.NAME_ASC,
                work_pool_filter=WorkPoolFilter(name=WorkPoolFilterName(any_=[work_pool_name])),
                work_queue_filter=WorkQueueFilter(name=WorkQueueFilterName(any_=queues))
                if queues
                else None,
            )
            self.deployments = list(deployments)
            entrypoints += [d.entrypoint for d in deployments if d.entrypoint]
        except Exception as exc:  # server down at start-up: load lazily later
            logger.warning("could not list deployments of %s: %s", work_pool_name, exc)
        for entrypoint in dict.fromkeys(entrypoints):
            self.for_entrypoint(entrypoint)
        return dict(self._by_entrypoint)

    def for_entrypoint(self, entrypoint: str) -> Flow[Any, Any]:
        """The flow at `entrypoint`, imported on first use.

        Raises:
            ValueError: as `load_flow` (the error is also kept in `errors`).
        """
        flow = self._by_entrypoint.get(entrypoint)
        if flow is not None:
            return flow
        try:
            flow = load_flow(entrypoint)
        except ValueError as exc:
            self.errors[entrypoint] = str(exc)
            logger.error("%s", exc)
            raise
        self._by_entrypoint[entrypoint] = flow
        logger.info("loaded flow %r from %s", flow.name, entrypoint)
        return flow

    def for_configuration(self, configuration: ResortJobConfiguration) -> Flow[Any, Any]:
        """The flow a run's configuration selects: by entrypoint, else by a loaded flow's name.

        Raises:
            ValueError: no entrypoint and no loaded flow of that name.
        """
        if configuration.entrypoint:
            return self.for_entrypoint(configuration.entrypoint)
        for flow in self._by_entrypoint.values():
            if flow.name == configuration.flow_name:
                return flow
        loaded = ", ".join(sorted(f.name for f in self._by_entrypoint.values()))
        raise ValueError(
            f"flow {configuration.flow_name!r} has no deployment entrypoint and is not one this "
            f"agent loaded ({loaded})"
        )
