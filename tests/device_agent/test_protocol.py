"""Protocol 2.0 codec against the ROBOTIS manual's packet examples and the real SDK."""

from __future__ import annotations

import random

import pytest
from dynamixel_sdk import PacketHandler

from device_agent.emulator import protocol as p


def _hex(text: str) -> bytes:
    return bytes.fromhex(text)


# Packet examples from the ROBOTIS e-Manual's Protocol 2.0 page (CRC section).
PING = _hex("FF FF FD 00 01 03 00 01 19 4E")
PING_STATUS = _hex("FF FF FD 00 01 07 00 55 00 06 04 26 65 5D")  # model 1030, fw 38
READ = _hex("FF FF FD 00 01 07 00 02 84 00 04 00 1D 15")  # 132, 4 bytes
READ_STATUS = _hex("FF FF FD 00 01 08 00 55 00 A6 00 00 00 8C C0")  # 166
WRITE = _hex("FF FF FD 00 01 09 00 03 74 00 00 02 00 00 CA 89")  # 116 = 512
WRITE_STATUS = _hex("FF FF FD 00 01 04 00 55 00 A1 0C")
REBOOT = _hex("FF FF FD 00 01 03 00 08 2F 4E")


def test_crc_check_value_and_sdk_table() -> None:
    assert p.crc16(b"123456789") == 0xFEE8
    sdk = PacketHandler(2.0)
    rng = random.Random(7)
    for _ in range(50):
        data = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40)))
        assert p.crc16(data) == sdk.updateCRC(0, list(data), len(data))
    for i in range(256):
        assert p.crc16(bytes((i,))) == sdk.updateCRC(0, [i], 1)


@pytest.mark.parametrize(
    ("packet", "motor_id", "inst", "params"),
    [
        (PING, 1, p.INST_PING, b""),
        (READ, 1, p.INST_READ, _hex("84 00 04 00")),
        (WRITE, 1, p.INST_WRITE, _hex("74 00 00 02 00 00")),
        (REBOOT, 1, p.INST_REBOOT, b""),
    ],
)
def test_manual_instruction_packets(packet: bytes, motor_id: int, inst: int, params: bytes) -> None:
    assert p.build_instruction(motor_id, inst, params) == packet
    assert p.PacketParser().feed(packet) == [p.Instruction(motor_id, inst, params)]


@pytest.mark.parametrize(
    ("packet", "params"),
    [
        (PING_STATUS, _hex("06 04 26")),
        (READ_STATUS, _hex("A6 00 00 00")),
        (WRITE_STATUS, b""),
    ],
)
def test_manual_status_packets(packet: bytes, params: bytes) -> None:
    assert p.build_status(1, 0, params) == packet
    assert p.parse_status(packet) == (1, 0, params)


def test_stuffing_inserts_fd_and_round_trips() -> None:
    assert p.stuff(b"\x55\x00\xff\xff\xfd\x01") == b"\x55\x00\xff\xff\xfd\xfd\x01"
    assert p.unstuff(b"\x55\x00\xff\xff\xfd\xfd\x01") == b"\x55\x00\xff\xff\xfd\x01"
    assert p.stuff(b"\xff\xff\xfd\xfd") == b"\xff\xff\xfd\xfd\xfd"
    rng = random.Random(11)
    for _ in range(300):
        body = bytes(rng.choice((0xFF, 0xFD, 0x00, rng.randrange(256))) for _ in range(24))
        assert p.unstuff(p.stuff(body)) == body


def test_stuffed_status_matches_sdk_and_parses_back() -> None:
    # Present Velocity -1 followed by a position byte 0xFD needs stuffing (reference 2.4).
    params = _hex("FF FF FF FF FD 01 00 00")
    packet = p.build_status(1, 0, params)
    assert packet[5] | (packet[6] << 8) == len(params) + 4 + 1  # one stuffing byte counted
    assert p.parse_status(packet) == (1, 0, params)
    sdk_unstuffed = PacketHandler(2.0).removeStuffing(list(packet))
    assert bytes(sdk_unstuffed[9 : 9 + len(params)]) == params


def test_stuffed_instruction_from_sdk_is_unstuffed() -> None:
    sdk = PacketHandler(2.0)
    raw = [0] * 16
    raw[4], raw[5], raw[6], raw[7] = 1, 9, 0, p.INST_WRITE
    raw[8:14] = [0x74, 0x00, 0xFF, 0xFF, 0xFD, 0x00]
    stuffed = sdk.addStuffing(raw)
    stuffed[0:4] = [0xFF, 0xFF, 0xFD, 0x00]
    total = stuffed[5] + 7
    crc = sdk.updateCRC(0, stuffed, total - 2)
    stuffed[total - 2], stuffed[total - 1] = crc & 0xFF, crc >> 8
    wire = bytes(stuffed[:total])
    assert wire == p.build_instruction(1, p.INST_WRITE, _hex("74 00 FF FF FD 00"))
    assert p.PacketParser().feed(wire) == [
        p.Instruction(1, p.INST_WRITE, _hex("74 00 FF FF FD 00"))
    ]


def test_parser_skips_garbage_and_handles_partial_input() -> None:
    parser = p.PacketParser()
    stream = b"\x00\x13\xff" + PING + b"\xff\xff" + READ + b"\xff"
    out: list[p.Instruction | p.BadPacket] = []
    for byte in stream:  # one byte at a time
        out.extend(parser.feed(bytes((byte,))))
    assert [pkt.instruction for pkt in out if isinstance(pkt, p.Instruction)] == [1, 2]
    assert parser.pending == 1  # the trailing 0xFF could start a header


def test_parser_reports_bad_crc_and_resynchronises() -> None:
    bad = bytearray(WRITE)
    bad[-1] ^= 0x01
    out = p.PacketParser().feed(bytes(bad) + REBOOT)
    assert isinstance(out[0], p.BadPacket)
    assert out[1] == p.Instruction(1, p.INST_REBOOT, b"")


def test_parser_rejects_bad_reserved_byte_and_length() -> None:
    junk = _hex("FF FF FD 05 01 03 00 01 19 4E") + _hex("FF FF FD 00 01 01 00")
    out = p.PacketParser().feed(junk + PING)
    assert out == [p.Instruction(1, p.INST_PING, b"")]


def test_corrupt_status_fails_crc() -> None:
    packet = p.build_status(1, 0, b"\x01", corrupt=True)
    with pytest.raises(ValueError, match="CRC"):
        p.parse_status(packet)
