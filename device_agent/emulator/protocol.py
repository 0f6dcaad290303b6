"""Dynamixel Protocol 2.0 wire codec: CRC-16, byte stuffing, instruction parser, status builder.

Pure functions and one streaming parser, no I/O. Source: the ROBOTIS e-Manual's Protocol 2.0
page (packets, CRC-16, byte stuffing, instructions).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "HEADER",
    "INST_ACTION",
    "INST_BULK_READ",
    "INST_BULK_WRITE",
    "INST_CLEAR",
    "INST_FACTORY_RESET",
    "INST_PING",
    "INST_READ",
    "INST_REBOOT",
    "INST_REG_WRITE",
    "INST_STATUS",
    "INST_SYNC_READ",
    "INST_SYNC_WRITE",
    "INST_WRITE",
    "BadPacket",
    "Instruction",
    "PacketParser",
    "build_instruction",
    "build_status",
    "crc16",
    "parse_status",
    "stuff",
    "unstuff",
]

HEADER = b"\xff\xff\xfd\x00"
MAX_PACKET_LENGTH = 1024  # the SDK's RXPACKET_MAX_LEN / TXPACKET_MAX_LEN

INST_PING = 0x01
INST_READ = 0x02
INST_WRITE = 0x03
INST_REG_WRITE = 0x04
INST_ACTION = 0x05
INST_FACTORY_RESET = 0x06
INST_REBOOT = 0x08
INST_CLEAR = 0x10
INST_STATUS = 0x55
INST_SYNC_READ = 0x82
INST_SYNC_WRITE = 0x83
INST_BULK_READ = 0x92
INST_BULK_WRITE = 0x93


def _make_table() -> tuple[int, ...]:
    table = []
    for i in range(256):
        crc = i << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x8005) if crc & 0x8000 else (crc << 1)
        table.append(crc & 0xFFFF)
    return tuple(table)


_CRC_TABLE = _make_table()


def crc16(data: bytes | bytearray, crc: int = 0) -> int:
    """CRC-16/BUYPASS (poly 0x8005, init 0, not reflected) as Protocol 2.0 uses it.

    Args:
        data: the bytes to cover (header through last parameter, already stuffed).
        crc: running value, for incremental use.
    """
    table = _CRC_TABLE
    for b in data:
        crc = ((crc << 8) ^ table[((crc >> 8) ^ b) & 0xFF]) & 0xFFFF
    return crc


def stuff(body: bytes | bytearray) -> bytes:
    """Insert an extra 0xFD after every ``FF FF FD`` in `body` (instruction through params)."""
    out = bytearray()
    for i, b in enumerate(body):
        out.append(b)
        if b == 0xFD and i >= 2 and body[i - 1] == 0xFF and body[i - 2] == 0xFF:
            out.append(0xFD)
    return bytes(out)


def unstuff(body: bytes | bytearray) -> bytes:
    """Drop the 0xFD that follows every ``FF FF FD`` in a stuffed `body` (inverse of `stuff`)."""
    out = bytearray()
    i = 0
    n = len(body)
    while i < n:
        b = body[i]
        out.append(b)
        stuffed = b == 0xFD and len(out) >= 3 and out[-2] == 0xFF and out[-3] == 0xFF
        if stuffed and i + 1 < n and body[i + 1] == 0xFD:
            i += 1  # skip the stuffing byte
        i += 1
    return bytes(out)


def _frame(motor_id: int, body: bytes | bytearray) -> bytes:
    stuffed = stuff(body)
    length = len(stuffed) + 2
    head = HEADER + bytes((motor_id & 0xFF, length & 0xFF, length >> 8))
    packet = head + stuffed
    crc = crc16(packet)
    return packet + bytes((crc & 0xFF, crc >> 8))


def build_instruction(motor_id: int, instruction: int, params: bytes | bytearray = b"") -> bytes:
    """A complete, stuffed instruction packet with CRC (what a host sends)."""
    return _frame(motor_id, bytes((instruction,)) + bytes(params))


def build_status(
    motor_id: int, error: int, params: bytes | bytearray = b"", *, corrupt: bool = False
) -> bytes:
    """A complete, stuffed status packet with CRC (what the servo sends).

    Args:
        motor_id: the answering servo's ID.
        error: the error byte (bit 7 alert, bits 0-6 error number).
        params: data bytes (unstuffed).
        corrupt: flip the CRC so the host sees COMM_RX_CORRUPT (fault injection).
    """
    packet = _frame(motor_id, bytes((INST_STATUS, error & 0xFF)) + bytes(params))
    if corrupt:
        packet = packet[:-2] + bytes((packet[-2] ^ 0xFF, packet[-1] ^ 0x5A))
    return packet


@dataclass(frozen=True, slots=True)
class Instruction:
    """One decoded (unstuffed) instruction packet."""

    motor_id: int
    instruction: int
    params: bytes


@dataclass(frozen=True, slots=True)
class BadPacket:
    """A frame with a valid header and length whose CRC did not match (dropped)."""

    motor_id: int
    raw: bytes


class PacketParser:
    """Streaming decoder of instruction packets.

    Feed it whatever arrived on the wire; it finds the header ``FF FF FD 00``, skips garbage, waits
    for partial packets to complete, checks the CRC over the stuffed bytes and unstuffs.
    """

    def __init__(self) -> None:
        self._buf = bytearray()

    @property
    def pending(self) -> int:
        """Bytes buffered but not yet decoded."""
        return len(self._buf)

    def reset(self) -> None:
        """Forget any partial input."""
        self._buf.clear()

    def feed(self, data: bytes | bytearray) -> list[Instruction | BadPacket]:
        """Add `data` and return every packet completed by it, in order."""
        buf = self._buf
        buf.extend(data)
        out: list[Instruction | BadPacket] = []
        while True:
            start = buf.find(b"\xff\xff\xfd")
            if start < 0:
                # keep a possible partial header (FF or FF FF) at the end
                keep = 0
                if buf.endswith(b"\xff\xff"):
                    keep = 2
                elif buf.endswith(b"\xff"):
                    keep = 1
                del buf[: len(buf) - keep]
                return out
            if start:
                del buf[:start]
            if len(buf) < 7:
                return out
            if buf[3] != 0x00:
                del buf[0]
                continue
            length = buf[5] | (buf[6] << 8)
            if length < 3 or length > MAX_PACKET_LENGTH:
                del buf[0]
                continue
            total = 7 + length
            if len(buf) < total:
                return out
            frame = bytes(buf[:total])
            crc = frame[-2] | (frame[-1] << 8)
            if crc16(frame[:-2]) != crc:
                out.append(BadPacket(frame[4], frame))
                del buf[0]  # resynchronise on the next header
                continue
            del buf[:total]
            body = unstuff(frame[7:-2])
            out.append(Instruction(frame[4], body[0], body[1:]))


def parse_status(packet: bytes | bytearray) -> tuple[int, int, bytes]:
    """Decode one complete status packet into ``(motor_id, error, params)``.

    Raises:
        ValueError: bad header, length, instruction byte or CRC.
    """
    if len(packet) < 11 or bytes(packet[:4]) != HEADER:
        raise ValueError("not a status packet: bad header or too short")
    length = packet[5] | (packet[6] << 8)
    if len(packet) != 7 + length:
        raise ValueError(f"status length field {length} does not match {len(packet)} bytes")
    crc = packet[-2] | (packet[-1] << 8)
    if crc16(packet[:-2]) != crc:
        raise ValueError("status CRC mismatch")
    body = unstuff(packet[7:-2])
    if body[0] != INST_STATUS:
        raise ValueError(f"instruction byte 0x{body[0]:02X} is not STATUS (0x55)")
    return packet[4], body[1], bytes(body[2:])
