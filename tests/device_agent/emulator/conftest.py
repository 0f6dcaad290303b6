"""Fixtures for the emulator tests: a bus with an instant model, and one on a hand-stepped clock."""

from __future__ import annotations

import pytest

from tests.device_agent.emulator.support import Bus, make_bus


@pytest.fixture
def bus() -> Bus:
    """An instant model (moves complete at once) on the real SDK."""
    return make_bus()


@pytest.fixture
def timed() -> Bus:
    """A timed model on a `FakeClock` (`timed.fake.advance(seconds)`)."""
    return make_bus(instant=False, fake_clock=True)
