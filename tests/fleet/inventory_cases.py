"""Inventory test material: the example files, a valid inventory to vary, malformed variants."""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "BASE",
    "DEMO",
    "LAB",
    "MALFORMED",
    "RB",
    "REPO",
    "SERVER",
    "WP",
    "resort_b",
    "server",
    "sub",
]

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "inventory" / "demo.yaml"
LAB = REPO / "inventory" / "lab.example.yaml"

# A small valid inventory; the tests' line numbers refer to it (fleet = line 1, resort-b = line 10).
BASE = """\
fleet:
  name: lab
  work_pool: lab-resorts
defaults:
  hotels: [A, B, C, D]
resorts:
  - name: resort-a
    host: pi-a
    serial_port: /dev/ttyUSB0
  - name: resort-b
    host: pi-b
"""
RB = "    host: pi-b\n"  # last line of resort-b: append keys after it (they land on line 12)
WP = "  work_pool: lab-resorts\n"  # append fleet keys after it (line 4)


def sub(old: str, new: str) -> str:
    """BASE with its first `old` replaced by `new`."""
    assert old in BASE, old
    return BASE.replace(old, new, 1)


def resort_b(extra: str) -> str:
    """BASE with `extra` lines appended to resort-b (from line 12)."""
    return sub(RB, RB + extra)


# A valid `server:` block, appended after BASE (server = line 12, hosts[0] = line 14).
SERVER = """\
server:
  hosts:
    - name: ctl-1
      address: 10.0.0.5
    - name: ctl-2
      replicas: 3
  database_url: postgresql+asyncpg://prefect@db.lab:5432/prefect
  redis_url: redis://redis.lab:6379/0
"""


def server(old: str = "", new: str = "", extra: str = "") -> str:
    """BASE + SERVER with its first `old` replaced by `new` and `extra` lines appended (line 20)."""
    assert old in SERVER, old
    return BASE + SERVER.replace(old, new, 1) + extra


SDK_RATES = (
    "9600, 19200, 38400, 57600, 115200, 230400, 460800, 500000, 576000, 921600, 1000000, "
    "1152000, 2000000, 2500000, 3000000, 3500000, 4000000"
)

# (id, file text, the exact lines of the InventoryError)
MALFORMED: list[tuple[str, str, list[str]]] = [
    (
        "unknown-top-level-key",
        BASE + "extras: 1\n",
        ["x.yaml:12: extras: unknown key (allowed: fleet, defaults, resorts, server)"],
    ),
    (
        "unknown-resort-key-typo",
        resort_b("    sped: 60\n"),
        ["x.yaml:12: resorts[1].sped: unknown key (did you mean 'speed'?)"],
    ),
    (
        "unknown-fleet-key",
        sub(WP, WP + "  pool: x\n"),
        ["x.yaml:4: fleet.pool: unknown key (did you mean 'work_pool'?)"],
    ),
    (
        "motor-id-wrong-type",
        resort_b("    motor_id: one\n"),
        ["x.yaml:12: resorts[1].motor_id: must be an integer (got 'one')"],
    ),
    (
        "motor-id-above-range",
        resort_b("    motor_id: 999\n"),
        ["x.yaml:12: resorts[1].motor_id: must be <= 252 (got 999)"],
    ),
    (
        "motor-id-below-range",
        resort_b("    motor_id: -1\n"),
        ["x.yaml:12: resorts[1].motor_id: must be >= 0 (got -1)"],
    ),
    (
        "motor-id-float",
        resort_b("    motor_id: 1.5\n"),
        ["x.yaml:12: resorts[1].motor_id: must be an integer (got 1.5)"],
    ),
    (
        "speed-zero",
        resort_b("    speed: 0\n"),
        ["x.yaml:12: resorts[1].speed: must be > 0 (got 0)"],
    ),
    (
        "speed-above-range",
        resort_b("    speed: 360\n"),
        ["x.yaml:12: resorts[1].speed: must be <= 270 (got 360)"],
    ),
    (
        "speed-not-a-number",
        resort_b("    speed: fast\n"),
        ["x.yaml:12: resorts[1].speed: must be a number (got 'fast')"],
    ),
    (
        "acceleration-negative-in-defaults",
        sub("  hotels: [A, B, C, D]\n", "  hotels: [A, B, C, D]\n  acceleration: -5\n"),
        ["x.yaml:6: defaults.acceleration: must be >= 0 (got -5)"],
    ),
    (
        "baudrate-not-an-sdk-rate",
        resort_b("    baudrate: 56000\n"),
        [
            "x.yaml:12: resorts[1].baudrate: must be a rate the Dynamixel SDK accepts: "
            f"{SDK_RATES} (got 56000)"
        ],
    ),
    (
        "rotation-direction-2",
        resort_b("    rotation_direction: 2\n"),
        ["x.yaml:12: resorts[1].rotation_direction: must be 1 or -1 (got 2)"],
    ),
    (
        "rotation-direction-bool",
        resort_b("    rotation_direction: true\n"),
        ["x.yaml:12: resorts[1].rotation_direction: must be 1 or -1 (got true)"],
    ),
    (
        "emulate-quoted-string",
        resort_b("    emulate: 'yes'\n"),
        ["x.yaml:12: resorts[1].emulate: must be true or false (got 'yes')"],
    ),
    (
        "move-timeout-above-range",
        resort_b("    move_timeout: 3600\n"),
        ["x.yaml:12: resorts[1].move_timeout: must be <= 600 (got 3600)"],
    ),
    (
        "max-current-above-range",
        resort_b("    max_current: 4.5\n"),
        ["x.yaml:12: resorts[1].max_current: must be <= 4 (got 4.5)"],
    ),
    (
        "hotels-empty",
        sub("[A, B, C, D]", "[]"),
        ["x.yaml:5: defaults.hotels: must have at least 1 item (got 0)"],
    ),
    (
        "hotels-duplicate",
        sub("[A, B, C, D]", "[A, B, A]"),
        ["x.yaml:5: defaults.hotels: duplicate hotel name 'A'"],
    ),
    (
        "hotels-more-than-8",
        sub("[A, B, C, D]", "[A, B, C, D, E, F, G, H, J]"),
        ["x.yaml:5: defaults.hotels: must have at most 8 items (got 9)"],
    ),
    (
        "hotel-name-lowercase",
        sub("[A, B, C, D]", "[a, B]"),
        ["x.yaml:5: defaults.hotels[0]: must be 1-4 uppercase letters or digits (got 'a')"],
    ),
    (
        "hotels-nowhere",
        sub("  hotels: [A, B, C, D]\n", "  speed: 20\n").replace(RB, RB + "    hotels: [A]\n"),
        ["x.yaml:7: resorts[0].hotels: required key missing (set it here or in defaults)"],
    ),
    (
        "resort-name-duplicate",
        sub("name: resort-b", "name: resort-a"),
        [
            "x.yaml:10: resorts[1].name: duplicate resort name 'resort-a' "
            "(first at resorts[0], line 7)"
        ],
    ),
    (
        "resort-name-not-a-slug",
        sub("name: resort-b", "name: Resort_B"),
        [
            "x.yaml:10: resorts[1].name: must be a slug: a lowercase letter, then lowercase "
            "letters, digits or '-', at most 40 characters (got 'Resort_B')"
        ],
    ),
    (
        "host-and-serial-port-duplicate",
        sub("host: pi-b", "host: pi-a"),
        [
            "x.yaml:10: resorts[1].serial_port: host 'pi-a' and serial port '/dev/ttyUSB0' "
            "are already used by resort-a (resorts[0])"
        ],
    ),
    (
        "host-missing",
        sub(RB, ""),
        ["x.yaml:10: resorts[1].host: required key missing"],
    ),
    (
        "host-with-space",
        sub("host: pi-b", "host: 'pi b'"),
        ["x.yaml:11: resorts[1].host: must be a hostname or an IP address (got 'pi b')"],
    ),
    (
        "fleet-block-missing",
        sub("fleet:\n  name: lab\n" + WP, ""),
        ["x.yaml:1: fleet: required key missing"],
    ),
    (
        "work-pool-missing",
        sub(WP, ""),
        ["x.yaml:1: fleet.work_pool: required key missing"],
    ),
    (
        "fleet-block-not-a-mapping",
        sub("fleet:\n  name: lab\n" + WP, "fleet: lab\n"),
        ["x.yaml:1: fleet: must be a mapping (got 'lab')"],
    ),
    (
        "control-pool-equals-work-pool",
        sub(WP, WP + "  control_pool: lab-resorts\n"),
        ["x.yaml:4: fleet.control_pool: must differ from fleet.work_pool"],
    ),
    (
        "work-pool-equals-default-control-pool",
        sub(WP, "  work_pool: lab-control\n"),
        [
            "x.yaml:3: fleet.work_pool: must differ from the control pool "
            "(default lab-control; set fleet.control_pool)"
        ],
    ),
    (
        "api-url-not-http",
        sub(WP, WP + "  api_url: ftp://server/api\n"),
        [
            "x.yaml:4: fleet.api_url: must be an http(s) URL such as http://127.0.0.1:4200/api "
            "(got 'ftp://server/api')"
        ],
    ),
    (
        "max-concurrent-moves-zero",
        sub(WP, WP + "  max_concurrent_moves: 0\n"),
        ["x.yaml:4: fleet.max_concurrent_moves: must be >= 1 (got 0)"],
    ),
    (
        "parent-heartbeat-too-short",
        sub(WP, WP + "  parent_heartbeat: 2\n"),
        ["x.yaml:4: fleet.parent_heartbeat: must be >= 5 (got 2)"],
    ),
    (
        "empty-fleet",
        BASE.split("resorts:", maxsplit=1)[0] + "resorts: []\n",
        ["x.yaml:6: resorts: empty fleet: at least one resort is required"],
    ),
    (
        "resorts-missing",
        BASE.split("resorts:", maxsplit=1)[0],
        ["x.yaml:1: resorts: required key missing"],
    ),
    (
        "resort-not-a-mapping",
        BASE + "  - resort-c\n",
        ["x.yaml:12: resorts[2]: must be a mapping (got 'resort-c')"],
    ),
    (
        "min-voltage-not-below-max",
        resort_b("    min_voltage: 12\n    max_voltage: 11.5\n"),
        ["x.yaml:12: resorts[1].min_voltage: min_voltage (12) must be below max_voltage (11.5)"],
    ),
    (
        "relative-serial-port-on-real-hardware",
        resort_b("    serial_port: tty-b\n"),
        [
            "x.yaml:12: resorts[1].serial_port: relative path 'tty-b' is only allowed with "
            "emulate: true (a real port needs an absolute path such as /dev/serial/by-id/...)"
        ],
    ),
    (
        "labels-not-a-list",
        resort_b("    labels: a, b\n"),
        ["x.yaml:12: resorts[1].labels: must be a list (got 'a, b')"],
    ),
    (
        "duplicate-yaml-key",
        resort_b("    host: pi-c\n"),
        ["x.yaml:12: resorts[1].host: duplicate key (first at line 11)"],
    ),
    (
        "not-yaml",
        "fleet: [unclosed\nresorts:\n",
        ["x.yaml:2: not valid YAML: expected ',' or ']', but got ':'"],
    ),
    (
        "top-level-not-a-mapping",
        "- fleet\n- resorts\n",
        ["x.yaml:1: top level must be a mapping of fleet, defaults, resorts (got a list)"],
    ),
    (
        "empty-file",
        "",
        ["x.yaml:1: empty file: expected a mapping with keys fleet, defaults, resorts"],
    ),
    (
        "server-database-url-with-password",
        server("prefect@db", "prefect:secret@db"),
        [
            "x.yaml:18: server.database_url: must not carry a password: "
            "name a vault variable instead"
        ],
    ),
    (
        "server-database-url-not-asyncpg",
        server("postgresql+asyncpg://", "postgresql://"),
        [
            "x.yaml:18: server.database_url: must be postgresql+asyncpg://user@host:port/database "
            "(got 'postgresql://prefect@db.lab:5432/prefect')"
        ],
    ),
    (
        "server-redis-url-without-port",
        server("redis.lab:6379", "redis.lab"),
        ["x.yaml:19: server.redis_url: needs a port (redis://host:PORT/...)"],
    ),
    (
        "server-redis-url-last-database",
        server("6379/0", "6379/15"),
        [
            "x.yaml:19: server.redis_url: must be redis://host:port/N with a database N from 0 "
            "to 14 (got 'redis://redis.lab:6379/15')"
        ],
    ),
    (
        "server-redis-url-with-password",
        server("redis://redis.lab", "redis://:pw@redis.lab"),
        ["x.yaml:19: server.redis_url: must not carry a password: name a vault variable instead"],
    ),
    (
        "server-no-hosts",
        server(
            "  hosts:\n    - name: ctl-1\n      address: 10.0.0.5\n    - name: ctl-2\n"
            "      replicas: 3\n",
            "  hosts: []\n",
        ),
        ["x.yaml:13: server.hosts: must have at least 1 item (got 0)"],
    ),
    (
        "server-duplicate-host",
        server("name: ctl-2", "name: ctl-1"),
        ["x.yaml:13: server.hosts: duplicate control host 'ctl-1'"],
    ),
    (
        "server-zero-replicas",
        server("replicas: 3", "replicas: 0"),
        ["x.yaml:17: server.hosts[1].replicas: must be >= 1 (got 0)"],
    ),
    (
        "server-host-key-typo",
        server("      address:", "      adress:"),
        ["x.yaml:15: server.hosts[0].adress: unknown key (did you mean 'address'?)"],
    ),
    (
        "server-missing-redis",
        server("  redis_url: redis://redis.lab:6379/0\n", ""),
        ["x.yaml:12: server.redis_url: required key missing"],
    ),
    (
        "server-password-var-not-a-name",
        server(extra="  database_password_var: db-password\n"),
        [
            "x.yaml:20: server.database_password_var: must be an Ansible variable name "
            "(letters, digits, '_') (got 'db-password')"
        ],
    ),
    (
        "server-balancer-on-a-replica-port",
        server(extra="  balancer_port: 4203\n"),
        [
            "x.yaml:12: server: balancer_port 4203 collides with the replicas' ports 4201-4203 "
            "(api_port + replicas)"
        ],
    ),
    (
        "server-prefect-version-not-the-pin",
        server(extra="  prefect_version: 3.8.0\n"),
        [
            "x.yaml:20: server.prefect_version: must be the Prefect version this package pins "
            "(3.9.1, got 3.8.0): upgrade the package, not the servers alone"
        ],
    ),
    (
        "every-problem-collected",
        sub(WP, "").replace(RB, RB + "    motor_id: 300\n    speed: -1\n"),
        [
            "x.yaml:1: fleet.work_pool: required key missing",
            "x.yaml:11: resorts[1].motor_id: must be <= 252 (got 300)",
            "x.yaml:12: resorts[1].speed: must be > 0 (got -1)",
        ],
    ),
]
