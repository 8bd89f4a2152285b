"""The cores this process may use: its CPU affinity (`taskset`, a cpuset) and its cgroup's CPU
quota (a container's or a pod's CPU limit), not `os.cpu_count()`, which counts the host's.

A quota of 1.5 cores on a 16-core affinity lets the process's threads run 1.5 cores' worth
of time per period, on any of the 16: 16 threads spinning there get throttled together and
make less progress than 2 would. So the effective core count is
min(len(affinity), ceil(quota / period)).

Every file is read under `root` (default "/"), so tests point it at a fake tree.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Where cgroup v1 mounts its `cpu` controller (alone or joined with cpuacct).
_V1_CPU_MOUNTS = ("cpu", "cpu,cpuacct", "cpuacct,cpu")


@dataclass(frozen=True)
class CpuBudget:
    """What the server may use: which CPUs, and how many of them at once."""

    cpus: tuple[int, ...]  # the affinity: CPU ids the process may run on
    quota_cores: float | None  # the cgroup's quota / period; None: no quota
    effective: int  # cores' worth the process can use at once
    detected_by: str  # "affinity", "cgroup quota" or "setting" (cpu.cores)

    def describe(self) -> dict[str, Any]:
        return {"effective_cores": self.effective, "detected_by": self.detected_by,
                "affinity": list(self.cpus),
                "cgroup_quota_cores": None if self.quota_cores is None
                else round(self.quota_cores, 3)}


def allowed_cpus(root: Path = Path("/"), affinity: Iterable[int] | None = None,
                 override: int | None = None) -> CpuBudget:
    """This process's CPU budget. `affinity`: the CPU ids (default: sched_getaffinity);
    `override`: a core count that replaces detection (the `cpu.cores` setting)."""
    if affinity is None:
        affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") \
            else range(os.cpu_count() or 1)  # macOS: no affinity to read
    cpus = tuple(sorted(affinity))
    quota = cgroup_quota_cores(root)
    if override is not None:
        return CpuBudget(cpus, quota, override, "setting")
    effective = effective_cores(len(cpus), quota)
    by_quota = quota is not None and math.ceil(quota) < len(cpus)
    return CpuBudget(cpus, quota, effective, "cgroup quota" if by_quota else "affinity")


def effective_cores(cpus: int, quota: float | None) -> int:
    """Cores' worth a process can use at once: its affinity's CPUs, fewer under a quota."""
    if quota is not None and math.ceil(quota) < cpus:
        return max(1, math.ceil(quota))
    return max(1, cpus)


def cgroup_quota_cores(root: Path = Path("/")) -> float | None:
    """The tightest CPU quota of this process's cgroup and its ancestors, v2 and v1, in
    cores (quota / period); None when there is none (or no cgroup can be read)."""
    try:
        lines = (root / "proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    quotas: list[float] = []
    for line in lines:
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and controllers == "":
            base = root / "sys/fs/cgroup"
            quotas += filter(None, (_v2_quota(d) for d in _up_from(base, path)))
        elif "cpu" in controllers.split(","):
            for mount in _V1_CPU_MOUNTS:
                base = root / "sys/fs/cgroup" / mount
                if base.is_dir():
                    quotas += filter(None, (_v1_quota(d) for d in _up_from(base, path)))
                    break
    return min(quotas, default=None)


def _up_from(base: Path, path: str) -> Iterator[Path]:
    """The cgroup's directory under its mount, then each parent up to the mount. Inside a
    container /proc/self/cgroup may name the host's path while the mount shows only the
    container's own cgroup (at its root): then the mount's root is the one to read."""
    leaf = base / path.strip("/")
    if not leaf.is_dir():
        yield base
        return
    while True:
        yield leaf
        if leaf == base or base not in leaf.parents:
            return
        leaf = leaf.parent


def _v2_quota(directory: Path) -> float | None:
    """cpu.max: "QUOTA PERIOD" in microseconds, or "max PERIOD" for none."""
    try:
        quota, period = (directory / "cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        return None
    return None if quota == "max" else _ratio(quota, period)


def _v1_quota(directory: Path) -> float | None:
    """cpu.cfs_quota_us (-1 for none) over cpu.cfs_period_us."""
    try:
        quota = (directory / "cpu.cfs_quota_us").read_text().strip()
        period = (directory / "cpu.cfs_period_us").read_text().strip()
    except OSError:
        return None
    return _ratio(quota, period)


def _ratio(quota: str, period: str) -> float | None:
    try:
        q, p = int(quota), int(period)
    except ValueError:
        return None
    return q / p if q > 0 and p > 0 else None
