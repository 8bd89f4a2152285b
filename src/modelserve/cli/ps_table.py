"""`modelserve ps` as a table, like `ollama ps`: sizes and durations in words people read."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

COLUMNS = ("NAME", "KIND", "STATE", "MEMORY", "IN FLIGHT", "KV USE", "KEEP-ALIVE LEFT")
UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def human_bytes(count: int | None) -> str:
    """1536 -> '1.5 KiB', 300 MiB -> '300 MiB'; nothing held -> '-'."""
    if not count:
        return "-"
    value = float(count)
    for unit in UNITS:
        if value < 1024 or unit == UNITS[-1]:
            break
        value /= 1024
    if unit == "B":
        return f"{count} B"
    return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def human_duration(seconds: float) -> str:
    """Whole units, rounded down as a countdown reads: 299 s -> '4 minutes'."""
    whole = int(seconds)
    if whole < 1:
        return "less than a second"
    for size, word in ((86400, "day"), (3600, "hour"), (60, "minute")):
        if whole >= size:
            return _plural(whole // size, word)
    return _plural(whole, "second")


def keep_alive_text(entry: dict[str, Any]) -> str:
    """'-' when not loaded, 'forever' when nothing unloads it, else the time left."""
    if entry.get("state") != "ready":
        return "-"
    left = entry.get("keep_alive_seconds_left")
    return "forever" if left is None else human_duration(float(left))


def kv_text(entry: dict[str, Any]) -> str:
    """KV cells in use of the chat engine's capacity; '-' for other kinds or when unknown."""
    used, capacity = entry.get("kv_used_tokens"), entry.get("kv_capacity_tokens")
    if used is None or not capacity or entry.get("state") != "ready":
        return "-"
    return f"{used}/{capacity} ({100 * used / capacity:.0f}%)"


def row(entry: dict[str, Any]) -> list[str]:
    loaded = entry.get("state") == "ready"
    return [str(entry.get("name", "?")), str(entry.get("kind", "?")),
            str(entry.get("state", "?")),
            human_bytes(entry.get("memory_bytes")) if loaded else "-",
            str(entry.get("in_flight", 0)), kv_text(entry), keep_alive_text(entry)]


def table(entries: Sequence[dict[str, Any]], gap: int = 3) -> str:
    """The header and one line per model, columns padded to their widest cell."""
    rows = [list(COLUMNS), *(row(e) for e in entries)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    lines = [(" " * gap).join(cell.ljust(w) for cell, w in zip(r, widths, strict=True))
             for r in rows]
    return "\n".join(line.rstrip() for line in lines)
