"""The `plate-resort` job configuration and variables, and the cache of the reads resolving them.

A device subflow run needs no infrastructure: its configuration only records the deployment's
entrypoint (which selects the flow) and the flow's name. Resolving it reads the deployment and
the flow; `ApiCache`, owned by the worker, keeps those reads off the dispatch path of most runs.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, ClassVar
from uuid import UUID

from prefect.workers.base import BaseVariables, BaseWorkerResult
from pydantic import Field, PrivateAttr

from device_agent.prefect_adapter import InProcessJobConfiguration

if TYPE_CHECKING:
    from prefect.client.schemas.objects import Flow as APIFlow
    from prefect.client.schemas.objects import FlowRun, WorkPool
    from prefect.client.schemas.responses import DeploymentResponse

__all__ = [
    "ApiCache",
    "ResortJobConfiguration",
    "ResortVariables",
    "ResortWorkerResult",
]

# A deployment re-provisioned with a new entrypoint is seen within this many seconds.
DEPLOYMENT_TTL = 30.0


class ApiCache:
    """The deployment and flow reads that every run's set-up repeats, kept briefly.

    Deployments expire after `ttl` seconds; flows never do (a flow id never changes its name).
    """

    def __init__(self, ttl: float = DEPLOYMENT_TTL) -> None:
        self.ttl = ttl
        self._deployments: dict[UUID, tuple[float, Any]] = {}
        self._flows: dict[UUID, Any] = {}

    async def deployment(self, client: Any, deployment_id: UUID) -> Any:
        """The deployment `deployment_id`, read at most once every `ttl` seconds."""
        hit = self._deployments.get(deployment_id)
        if hit is not None and time.monotonic() < hit[0]:
            return hit[1]
        deployment = await client.read_deployment(deployment_id)
        self.remember_deployment(deployment)
        return deployment

    def remember_deployment(self, deployment: Any) -> None:
        """Keep a deployment read elsewhere (e.g. the start-up listing) for `ttl` seconds."""
        self._deployments[deployment.id] = (time.monotonic() + self.ttl, deployment)

    async def flow(self, client: Any, flow_id: UUID) -> Any:
        """The flow `flow_id`, read once."""
        if flow_id not in self._flows:
            self._flows[flow_id] = await client.read_flow(flow_id)
        return self._flows[flow_id]


class ResortJobConfiguration(InProcessJobConfiguration):
    """Job configuration of a device subflow run (in-process: no infrastructure to template).

    Besides the base fields it records the deployment's entrypoint, which selects the flow. The
    class itself reads the API on every resolution; `using(cache)` gives the subclass a worker
    resolves with, reading through that worker's `ApiCache`.
    """

    api_cache: ClassVar[ApiCache | None] = None

    @classmethod
    def using(cls, cache: ApiCache) -> type[ResortJobConfiguration]:
        """This configuration, resolved through `cache` (one subclass per worker)."""
        return type(cls.__name__, (cls,), {"api_cache": cache, "__module__": cls.__module__})

    @classmethod
    async def resolve_for_flow_run(
        cls,
        flow_run: FlowRun,
        *,
        client: Any,
        work_pool: WorkPool,
        worker_name: str,
        worker_id: UUID | None = None,
        deployment: DeploymentResponse | None = None,
    ) -> ResortJobConfiguration:
        """Prefect's resolution (job variables over the pool's template), with the deployment
        and flow reads going through the worker's cache."""
        cache = cls.api_cache
        if deployment is None and flow_run.deployment_id:
            deployment = (
                await cache.deployment(client, flow_run.deployment_id)
                if cache is not None
                else await client.read_deployment(flow_run.deployment_id)
            )
        flow = (
            await cache.flow(client, flow_run.flow_id)
            if cache is not None
            else await client.read_flow(flow_run.flow_id)
        )
        values = {**(getattr(deployment, "job_variables", None) or {})}
        values.update(flow_run.job_variables or {})
        configuration: ResortJobConfiguration = await cls.from_template_and_values(
            base_job_template=work_pool.base_job_template, values=values, client=client
        )
        configuration.prepare_for_flow_run(
            flow_run=flow_run,
            deployment=deployment,
            flow=flow,
            work_pool=work_pool,
            worker_name=worker_name,
            worker_id=worker_id,
        )
        return configuration

    move_timeout: float | None = Field(
        default=None,
        description="Unused by the worker itself; device flows take their own timeouts.",
    )
    _entrypoint: str | None = PrivateAttr(default=None)
    _flow_name: str | None = PrivateAttr(default=None)

    def prepare_for_flow_run(
        self,
        flow_run: FlowRun,
        deployment: DeploymentResponse | None = None,
        flow: APIFlow | None = None,
        work_pool: WorkPool | None = None,
        worker_name: str | None = None,
        worker_id: UUID | None = None,
    ) -> None:
        """Prepare as Prefect does, and remember the entrypoint and flow name."""
        super().prepare_for_flow_run(
            flow_run, deployment, flow, work_pool, worker_name, worker_id=worker_id
        )
        self._entrypoint = getattr(deployment, "entrypoint", None)
        self._flow_name = getattr(flow, "name", None)

    @property
    def entrypoint(self) -> str | None:
        """The deployment's entrypoint (``"module:attr"``), if the run has a deployment."""
        return self._entrypoint

    @property
    def flow_name(self) -> str | None:
        """The flow's name as registered with the API."""
        return self._flow_name


class ResortVariables(BaseVariables):
    """Job variables a deployment may set for the `plate-resort` pool."""

    move_timeout: float | None = Field(
        default=None,
        description="Unused by the worker itself; device flows take their own timeouts.",
    )


class ResortWorkerResult(BaseWorkerResult):
    """Outcome of one in-process flow run (`status_code` 0: the engine reported the state)."""
