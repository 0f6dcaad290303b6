"""Settings of one device and of its agent: the device side's own view, in user units.

The fleet inventory is turned into these by `flows.agent_settings` (or the rollout writes them to a
JSON/YAML file); `device_agent` never reads the fleet inventory itself.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from device_agent.errors import ConfigurationError
from resort_common.tunables import (
    DEVICE_DEFAULTS as D,
)
from resort_common.tunables import (
    SDK_BAUDRATES,
    Acceleration,
    HomingOffset,
    Hotel,
    MaxCurrent,
    MaxTemperature,
    MaxVoltage,
    MinVoltage,
    MotorId,
    MoveTimeout,
    OffsetAngle,
    PositionTolerance,
    RoomsPerHotel,
    RotationDirection,
    SerialPort,
    Speed,
    TorqueLimit,
)

__all__ = ["AgentSettings", "DeviceConfig", "EmulatorOptions", "load_agent_settings"]

_STRICT = ConfigDict(extra="forbid", frozen=True)


class DeviceConfig(BaseModel):
    """Everything the driver needs for one resort (degrees, seconds, volts, amperes, Celsius).

    Ranges and defaults are the fleet inventory's (`resort_common.tunables`).
    """

    model_config = _STRICT

    name: str = Field(min_length=1)
    serial_port: SerialPort = D["serial_port"]
    baudrate: int = D["baudrate"]
    motor_id: MotorId = D["motor_id"]
    hotels: tuple[Hotel, ...] = Field(min_length=1, max_length=8)
    rooms_per_hotel: RoomsPerHotel = D["rooms_per_hotel"]
    offset_angle: OffsetAngle = D["offset_angle"]
    rotation_direction: RotationDirection = D["rotation_direction"]
    speed: Speed = Field(default=D["speed"], description="carousel speed, deg/s")
    acceleration: Acceleration = Field(
        default=D["acceleration"], description="deg/s^2; 0 = rectangular profile"
    )
    position_tolerance: PositionTolerance = Field(
        default=D["position_tolerance"], description="degrees"
    )
    move_timeout: MoveTimeout = Field(default=D["move_timeout"], description="seconds")
    max_temperature: MaxTemperature = Field(default=D["max_temperature"], description="Celsius")
    min_voltage: MinVoltage = Field(default=D["min_voltage"], description="volts")
    max_voltage: MaxVoltage = Field(default=D["max_voltage"], description="volts")
    max_current: MaxCurrent = Field(default=D["max_current"], description="amperes")
    torque_limit: TorqueLimit = Field(
        default=D["torque_limit"], description="amperes: move current cap (mode 5)"
    )
    homing_offset: HomingOffset = Field(default=D["homing_offset"], description="degrees")

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
