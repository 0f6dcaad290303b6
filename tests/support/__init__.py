"""Shared test helpers: real Prefect servers and emulator processes, started per test session."""
