"""The CPU budget from fake /proc and /sys/fs/cgroup trees: affinity, cgroup v1 and v2
quotas (none, whole, fractional, a parent's tighter one), the `cores` override."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelserve.cpu_cores import allowed_cpus, cgroup_quota_cores


def tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def v2(root: Path, cpu_max: str, path: str = "/app.slice/server") -> Path:
    return tree(root, {"proc/self/cgroup": f"0::{path}\n",
                       f"sys/fs/cgroup{path}/cpu.max": f"{cpu_max}\n"})


def v1(root: Path, quota: int, period: int = 100000, mount: str = "cpu,cpuacct",
       path: str = "/docker/abc") -> Path:
    return tree(root, {
        "proc/self/cgroup": f"12:memory:{path}\n4:cpu,cpuacct:{path}\n0::/\n",
        f"sys/fs/cgroup/{mount}{path}/cpu.cfs_quota_us": f"{quota}\n",
        f"sys/fs/cgroup/{mount}{path}/cpu.cfs_period_us": f"{period}\n"})


def test_affinity_alone_without_any_cgroup(tmp_path: Path) -> None:
    budget = allowed_cpus(tmp_path, affinity={3, 1, 2})
    assert (budget.cpus, budget.effective, budget.detected_by) == ((1, 2, 3), 3, "affinity")
    assert budget.quota_cores is None


@pytest.mark.parametrize(("cpu_max", "quota", "effective", "by"), [
    ("max 100000", None, 8, "affinity"),
    ("200000 100000", 2.0, 2, "cgroup quota"),
    ("50000 100000", 0.5, 1, "cgroup quota"),
    ("150000 100000", 1.5, 2, "cgroup quota"),
    ("1600000 100000", 16.0, 8, "affinity"),  # a quota above the affinity: the affinity
])
def test_cgroup_v2_cpu_max(tmp_path: Path, cpu_max: str, quota: float | None, effective: int,
                           by: str) -> None:
    budget = allowed_cpus(v2(tmp_path, cpu_max), affinity=range(8))
    assert (budget.quota_cores, budget.effective, budget.detected_by) == (quota, effective, by)


def test_cgroup_v2_a_parents_tighter_quota_counts(tmp_path: Path) -> None:
    root = v2(tmp_path, "max 100000")
    tree(root, {"sys/fs/cgroup/app.slice/cpu.max": "300000 100000\n",
                "sys/fs/cgroup/cpu.max": "max 100000\n"})
    assert cgroup_quota_cores(root) == 3.0


def test_cgroup_v2_in_a_container_reads_its_namespace_root(tmp_path: Path) -> None:
    # /proc/self/cgroup names a path the container's mount does not show
    root = tree(tmp_path, {"proc/self/cgroup": "0::/kubepods/pod1/ctr\n",
                           "sys/fs/cgroup/cpu.max": "250000 100000\n"})
    assert cgroup_quota_cores(root) == 2.5


@pytest.mark.parametrize("mount", ["cpu,cpuacct", "cpu"])
def test_cgroup_v1_cfs_quota(tmp_path: Path, mount: str) -> None:
    budget = allowed_cpus(v1(tmp_path, 150000, mount=mount), affinity=range(4))
    assert (budget.quota_cores, budget.effective, budget.detected_by) == \
        (1.5, 2, "cgroup quota")


def test_cgroup_v1_without_a_quota(tmp_path: Path) -> None:
    assert cgroup_quota_cores(v1(tmp_path, -1)) is None


def test_cgroup_v1_quarter_core_with_another_period(tmp_path: Path) -> None:
    budget = allowed_cpus(v1(tmp_path, 12500, period=50000), affinity={0, 1})
    assert (budget.quota_cores, budget.effective) == (0.25, 1)


def test_unreadable_or_garbled_files_mean_no_quota(tmp_path: Path) -> None:
    assert cgroup_quota_cores(tmp_path) is None  # no /proc/self/cgroup at all
    assert cgroup_quota_cores(v2(tmp_path / "a", "lots 100000")) is None
    assert cgroup_quota_cores(v2(tmp_path / "b", "")) is None


def test_the_cores_setting_overrides_detection(tmp_path: Path) -> None:
    budget = allowed_cpus(v2(tmp_path, "50000 100000"), affinity=range(4), override=3)
    assert (budget.effective, budget.detected_by, budget.quota_cores) == (3, "setting", 0.5)


def test_this_process_has_a_budget() -> None:
    budget = allowed_cpus()
    assert budget.effective >= 1 and budget.cpus
    assert budget.describe()["effective_cores"] == budget.effective
