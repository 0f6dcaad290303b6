"""Line-numbered YAML loading and one-line problem messages of the inventory loader (private).

`MarkedLoader` is a `yaml.SafeLoader` that remembers the line of every mapping key and sequence
item by key path (`("resorts", 1, "motor_id")`) and records duplicate keys instead of silently
keeping the last. `Problems` turns (key path, reason) into ``FILE:LINE: key.path: reason`` lines;
`describe_error` words a pydantic error as that reason.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import yaml

__all__ = ["KeyPath", "MarkedLoader", "Problems", "describe_error", "key_path", "show_value"]

#: A location in the document: mapping keys and sequence indexes, outermost first.
KeyPath = tuple[str | int, ...]


class MarkedLoader(yaml.SafeLoader):
    """SafeLoader that records the line of every key / item by key path and reports duplicates."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.lines: dict[KeyPath, int] = {}
        self.duplicates: list[tuple[KeyPath, int, int]] = []  # (path, line, first line)

    def load_marked(self) -> Any:
        """Construct the single document, filling `lines` and `duplicates`."""
        node = self.get_single_node()
        if node is None:
            return None
        self.lines[()] = node.start_mark.line + 1
        return self._build(node, (), set())

    def _build(self, node: yaml.Node, path: KeyPath, stack: set[int]) -> Any:
        if id(node) in stack:
            raise yaml.constructor.ConstructorError(None, None, "recursive alias", node.start_mark)
        if isinstance(node, yaml.MappingNode):
            self.flatten_mapping(node)
            result: dict[Any, Any] = {}
            first: dict[str, int] = {}
            for key_node, value_node in node.value:
                raw = self.construct_object(key_node, deep=True)
                if not isinstance(raw, str | int | float | bool) and raw is not None:
                    raise yaml.constructor.ConstructorError(
                        None, None, "keys must be plain scalars", key_node.start_mark
                    )
                # Keys of the file format are strings; `1:` or `yes:` becomes an unknown key
                # "1" / "True" (never mistaken for a list index in a key path).
                key = raw if isinstance(raw, str) else str(raw)
                line = key_node.start_mark.line + 1
                if key in first:
                    self.duplicates.append(((*path, key), line, first[key]))
                else:
                    first[key] = line
                    self.lines[(*path, key)] = line
                result[key] = self._build(value_node, (*path, key), stack | {id(node)})
            return result
        if isinstance(node, yaml.SequenceNode):
            items = []
            for index, item in enumerate(node.value):
                self.lines[(*path, index)] = item.start_mark.line + 1
                items.append(self._build(item, (*path, index), stack | {id(node)}))
            return items
        return self.construct_object(node, deep=True)


def key_path(path: KeyPath) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def show_value(value: Any) -> str:
    """A value as the user wrote it in YAML, for '(got ...)'."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return f"a {type(value).__name__}"


_TYPE_WORDS = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "string_type": "a string",
    "list_type": "a list",
    "tuple_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
}

_LIMITS = {
    "greater_than_equal": (">=", "ge"),
    "greater_than": (">", "gt"),
    "less_than_equal": ("<=", "le"),
    "less_than": ("<", "lt"),
}


def _items(count: Any) -> str:
    return f"{count} item" if count == 1 else f"{count} items"


def describe_error(
    error: Mapping[str, Any],
    *,
    allowed_keys: Callable[[KeyPath], list[str]],
    pattern_hints: Mapping[str, str],
) -> str:
    """The reason part of a problem line for one pydantic error (`ValidationError.errors()`).

    Args:
        error: one pydantic error dict.
        allowed_keys: keys allowed in the mapping at a key path (for 'unknown key' hints).
        pattern_hints: what a string matching each regex pattern looks like, in words.
    """
    kind = error["type"]
    ctx = error.get("ctx") or {}
    value = error.get("input")
    loc = tuple(error["loc"])
    if kind == "missing":
        return "required key missing"
    if kind == "extra_forbidden":
        allowed = allowed_keys(loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        if close:
            return f"unknown key (did you mean {close[0]!r}?)"
        return f"unknown key (allowed: {', '.join(allowed)})" if allowed else "unknown key"
    if kind in _TYPE_WORDS:
        return f"must be {_TYPE_WORDS[kind]} (got {show_value(value)})"
    if kind in _LIMITS:
        op, key = _LIMITS[kind]
        return f"must be {op} {show_value(ctx.get(key))} (got {show_value(value)})"
    if kind == "literal_error":
        return f"must be {ctx.get('expected')} (got {show_value(value)})"
    if kind == "string_pattern_mismatch":
        hint = pattern_hints.get(ctx.get("pattern", ""), f"must match {ctx.get('pattern')}")
        return f"{hint} (got {show_value(value)})"
    if kind == "too_short":
        return (
            f"must have at least {_items(ctx.get('min_length'))} (got {ctx.get('actual_length')})"
        )
    if kind == "too_long":
        return f"must have at most {_items(ctx.get('max_length'))} (got {ctx.get('actual_length')})"
    if kind == "string_too_short":
        return "must not be empty"
    if kind == "string_too_long":
        return f"must be at most {ctx.get('max_length')} characters"
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    return str(error["msg"])


class Problems:
    """Collects ``FILE:LINE: key.path: reason`` lines, reported sorted by line."""

    def __init__(self, source: str, lines: dict[KeyPath, int]) -> None:
        self.source = source
        self.lines = lines
        self.items: list[tuple[int, str]] = []

    def line_of(self, path: KeyPath) -> int:
        while path and path not in self.lines:
            path = path[:-1]
        return self.lines.get(path, 1)

    def add(self, path: KeyPath, reason: str, line: int | None = None) -> None:
        line = self.line_of(path) if line is None else line
        where = f"{key_path(path)}: " if path else ""
        self.items.append((line, f"{self.source}:{line}: {where}{reason}"))

    def __bool__(self) -> bool:
        return bool(self.items)

    def __iter__(self) -> Iterator[str]:
        # Sorted by line; stable, so problems on one line keep their discovery order.
        return iter(text for _, text in sorted(self.items, key=lambda item: item[0]))
