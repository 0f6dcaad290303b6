"""Comparing what the server holds with what the inventory wants, for `fleet provision`."""

from __future__ import annotations

from typing import Any

__all__ = ["automation_fields", "changed_fields", "detail", "norm"]


def norm(value: Any) -> Any:
    """JSON-comparable form (tuples -> lists, sorted dict keys via json round trip)."""
    import json

    return json.loads(json.dumps(value, sort_keys=True, default=str))


def changed_fields(current: dict[str, Any], desired: dict[str, Any]) -> dict[str, Any]:
    """Fields of `desired` whose value differs from `current`."""
    return {k: v for k, v in desired.items() if norm(current.get(k)) != norm(v)}


def detail(current: dict[str, Any], diff: dict[str, Any]) -> str:
    def short(v: Any) -> str:
        text = repr(v)
        return text if len(text) <= 30 else text[:27] + "..."

    return ", ".join(
        f"{k}: {short(current.get(k))} -> {short(v)}" if not isinstance(v, dict) else f"{k} changed"
        for k, v in diff.items()
    )


def automation_fields(automation: Any) -> dict[str, Any]:
    """The compared fields of an automation; the trigger's own id and set order do not count."""

    def canonical(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: canonical(v) for k, v in value.items() if k != "id"}
        if isinstance(value, list):
            items = [canonical(v) for v in value]
            return sorted(items) if all(isinstance(v, str) for v in items) else items
        return value

    data = automation.model_dump(mode="json")
    return {k: canonical(data.get(k)) for k in ("description", "enabled", "trigger", "actions")}
