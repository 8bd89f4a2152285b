"""Real memory figures from /proc: a worker's resident set and the host's available memory."""

from __future__ import annotations

import os


def rss_bytes(pid: int) -> int:
    """Resident memory of process `pid` (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def available_bytes() -> int | None:
    """The host's MemAvailable (what can be allocated without swapping); None if unknown."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        return None
    return None
