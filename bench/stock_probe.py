"""A tiny flow for the stock process worker in `bench_dispatch`: records when its body starts."""

from __future__ import annotations

import time
from pathlib import Path

from prefect import flow
from prefect.runtime import flow_run


@flow(name="stock-probe", persist_result=False)
def stock_probe(out_dir: str) -> None:
    """Write the body's start time (epoch seconds) to `out_dir/<flow run id>`."""
    started = time.time()
    Path(out_dir, str(flow_run.id)).write_text(repr(started))
