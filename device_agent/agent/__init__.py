"""The device agent: one resort's device, worker, e-stop listener, status publisher, link monitor.

* `lifecycle`: `Agent` (open the resort once, serve its queue, stop it safely) and `run_agent`.
* `status`: the status document and its publisher (variable, status and heartbeat events).
* `estop`: the e-stop listener and the fleet's latch variable.
* `link_monitor`: reconnects a lost serial port, probes the idle device.

The emulator child of an emulated resort is supervised by `device_agent.emulator_child`.
"""

from __future__ import annotations

from device_agent.agent.lifecycle import Agent, run_agent

__all__ = ["Agent", "run_agent"]
