"""Settings of one device and of its agent: the device side's own view, in user units.

The fleet inventory is turned into these by `flows.agent_settings` (or the rollout writes them to a
JSON/YAML file); `device_agent` never reads the fleet inventory itself.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from device_agent.control_table import SDK_BAUDRATES
from device_agent.errors import ConfigurationError

__all__ = ["AgentSettings", "DeviceConfig", "EmulatorOptions", "load_agent_settings"]

_STRICT = ConfigDict(extra="forbid", frozen=True)


class DeviceConfig(BaseModel):
    """Everything the driver needs for one resort (degrees, seconds, volts, amperes, Celsius)."""

    model_config = _STRICT

    name: str = Field(min_length=1)
    serial_port: str = "/dev/ttyUSB0"
    baudrate: int = 57600
    motor_id: int = Field(default=1, ge=0, le=252)
    hotels: tuple[str, ...] = Field(min_length=1, max_length=8)
    rooms_per_hotel: int = Field(default=20, ge=1, le=100)
    offset_angle: float = Field(default=0.0, ge=-360.0, le=360.0)
    rotation_direction: Literal[1, -1] = 1
    speed: float = Field(default=30.0, gt=0, le=270.0, description="carousel speed, deg/s")
    acceleration: float = Field(
        default=60.0, ge=0, le=10000.0, description="deg/s^2; 0 = rectangular profile"
    )
    position_tolerance: float = Field(default=1.0, gt=0, le=10.0, description="degrees")
    move_timeout: float = Field(default=30.0, gt=0, le=600.0, description="seconds")
    max_temperature: float = Field(default=70.0, gt=0, le=100.0, description="Celsius")
    min_voltage: float = Field(default=10.0, ge=0, le=16.0, description="volts")
    max_voltage: float = Field(default=14.8, ge=0, le=20.0, description="volts")
    max_current: float = Field(default=2.0, gt=0, le=4.0, description="amperes")
    torque_limit: float = Field(
        default=1.0, ge=0.1, le=3.2, description="amperes: move current cap (mode 5)"
    )
    homing_offset: float = Field(default=0.0, ge=-90.0, le=90.0, description="degrees")

    @model_validator(mode="after")
    def _check(self) -> DeviceConfig:
        if self.baudrate not in SDK_BAUDRATES:
            raise ValueError(f"baudrate {self.baudrate} is not one the Dynamixel SDK accepts")
        if len(set(self.hotels)) != len(self.hotels):
            raise ValueError("hotel names must be unique")
        if self.min_voltage >= self.max_voltage:
            raise ValueError("min_voltage must be below max_voltage")
        return self

    def hotel_angle(self, hotel: str) -> float:
        """Resort-frame angle of `hotel` (degrees, 0-360): offset + index * 360 / hotel count."""
        try:
            index = self.hotels.index(hotel)
        except ValueError:
            raise ConfigurationError(
                f"hotel {hotel!r} is not one of {', '.join(self.hotels)} on {self.name}"
            ) from None
        return (self.offset_angle + index * 360.0 / len(self.hotels)) % 360.0


class EmulatorOptions(BaseModel):
    """How the agent starts its pty emulator when the resort is emulated."""

    model_config = _STRICT

    instant: bool = False
    log_file: Path | None = None


class AgentSettings(BaseModel):
    """One agent process: its device, its Prefect pool/queue and the names it publishes under."""

    model_config = _STRICT

    device: DeviceConfig
    api_url: str | None = None
    work_pool: str
    work_queue: str
    worker_name: str
    status_variable: str
    estop_variable: str
    resource_id: str
    state_dir: Path = Path("/var/lib/plate-resort-agent")
    poll_interval: float = Field(default=15.0, gt=0, le=300.0)
    shutdown_grace: float = Field(default=30.0, ge=0, le=600.0)
    heartbeat: float = Field(
        default=15.0, ge=1.0, le=300.0, description="seconds between idle status publications"
    )
    offline_after: float | None = Field(
        default=None,
        gt=0,
        description="seconds of silence the fleet reports as offline (None: alerts off)",
    )
    emulator: EmulatorOptions | None = None


def load_agent_settings(path: str | Path) -> AgentSettings:
    """Read an agent settings file (JSON or YAML) written by the rollout.

    Raises:
        ConfigurationError: unreadable file or invalid settings (one line per problem).
    """
    path = Path(path)
    try:
        text = path.read_text()
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        return AgentSettings.model_validate(data)
    except OSError as exc:
        raise ConfigurationError(f"{path}: cannot read settings: {exc.strerror}") from exc
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        raise ConfigurationError(f"{path}: not valid YAML/JSON: {exc}") from exc
    except ValidationError as exc:
        lines = [f"{path}: {'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise ConfigurationError("; ".join(lines)) from exc
