"""This machine's capacity (v0.3 `pkg/capacity`): the compute domain's `HostCapacity` port, read from
the host (cgroups, /proc, `nvidia-smi`).

CPU = cores x 0.8, memory = 80 % of RAM, disk = 80 % of the free space where the node keeps its data,
GPU = the GPUs `nvidia-smi` lists (0 without the tool, or when it fails; v0.3 asked
`nvidia-container-cli`). Cores and RAM are those the node's cgroup allows when it is limited (a
container or a Kubernetes pod with limits: cgroup v2 `cpu.max`/`memory.max` along its path, or v1
`cpu.cfs_quota_us`/`memory.limit_in_bytes`), so a node never offers more than its pod may use.
"""

import logging
import os
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bacalhau_grpc.common.model import pb

# The share of the machine a node offers by default (v0.3 `pkg/capacity`).
MACHINE_SHARE = 0.8
# Where the process's cgroup limits are read (cgroup v2 unified, or the v1 controllers' folders).
CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")
# How GPUs are counted: one line per GPU.
GPU_QUERY = ("nvidia-smi", "--query-gpu=index", "--format=csv,noheader")
GPU_QUERY_TIMEOUT = 10.0

log = logging.getLogger(__name__)


def gpu_count(command: tuple[str, ...] = GPU_QUERY, timeout: float = GPU_QUERY_TIMEOUT) -> int:
    """The number of GPUs `nvidia-smi` lists; 0 when it is not installed, fails or hangs."""
    if shutil.which(command[0]) is None:
        return 0
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        log.warning("cannot count GPUs with %s: %s", command[0], exc)
        return 0
    if done.returncode != 0:
        log.warning("cannot count GPUs: %s exited with %d", command[0], done.returncode)
        return 0
    return sum(1 for line in done.stdout.splitlines() if line.strip())


def machine_capacity(
    data_dir: Path,
    *,
    gpus: int | None = None,
    cgroup_root: Path = CGROUP_ROOT,
    proc_cgroup: Path = PROC_CGROUP,
) -> pb.ResourceUsageData:
    """80 % of this machine's CPU cores, RAM and free disk under `data_dir` (cores and RAM within the
    process's cgroup limits), and its GPUs (`gpus`, else `gpu_count()`)."""
    try:
        cores: float = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        memory = 0
    cpu_limit, memory_limit = cgroup_limits(cgroup_root, proc_cgroup)
    if cpu_limit is not None:
        cores = min(cores, cpu_limit)
    if memory_limit is not None:
        memory = min(memory, memory_limit) if memory else memory_limit
    probe = data_dir
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    disk = shutil.disk_usage(probe).free
    return pb.ResourceUsageData(
        cpu=round(cores * MACHINE_SHARE, 3),
        memory=int(memory * MACHINE_SHARE),
        disk=int(disk * MACHINE_SHARE),
        gpu=gpu_count() if gpus is None else gpus,
    )


def cgroup_limits(
    root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP
) -> tuple[float | None, int | None]:
    """The CPU cores and memory bytes this process's cgroup allows (None: no limit, or no cgroup): the
    tightest limit along its cgroup's path, as the kernel applies them."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None, None
    paths: dict[str, str] = {}  # controller ("" for cgroup v2) -> the process's cgroup path
    for line in lines:
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            paths[controller] = path
    if "" in paths and (root / "cgroup.controllers").exists():  # cgroup v2, unified
        folders = _along(root, paths[""])
        return _tightest(_cpu_v2(f) for f in folders), _tightest(_bytes_v2(f) for f in folders)
    cpu_folders = _along(root / "cpu", paths.get("cpu", "/"))
    memory_folders = _along(root / "memory", paths.get("memory", "/"))
    return _tightest(_cpu_v1(f) for f in cpu_folders), _tightest(_bytes_v1(f) for f in memory_folders)


def _along(mount: Path, path: str) -> list[Path]:
    """The cgroup's folder and its ancestors under the controller's mount (those that exist here)."""
    folder = mount.joinpath(*[part for part in path.split("/") if part])
    found = []
    while True:
        if folder.is_dir():
            found.append(folder)
        if folder == mount or folder == folder.parent:
            return found
        folder = folder.parent


def _tightest(values: Iterable[float | None]) -> Any:
    limits = [value for value in values if value is not None]
    return min(limits) if limits else None


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _cpu_v2(folder: Path) -> float | None:
    text = _read(folder / "cpu.max")  # "max 100000" or "<quota> <period>"
    if not text or text.startswith("max"):
        return None
    quota, _, period = text.partition(" ")
    return int(quota) / int(period or 100_000)


def _bytes_v2(folder: Path) -> int | None:
    text = _read(folder / "memory.max")  # "max" or bytes
    return None if not text or text == "max" else int(text)


def _cpu_v1(folder: Path) -> float | None:
    quota, period = _read(folder / "cpu.cfs_quota_us"), _read(folder / "cpu.cfs_period_us")
    if not quota or not period or int(quota) <= 0:
        return None
    return int(quota) / int(period)


def _bytes_v1(folder: Path) -> int | None:
    text = _read(folder / "memory.limit_in_bytes")
    # Unlimited is reported as a huge number (PAGE_COUNTER_MAX pages): anything from 2**62 on.
    return None if not text or int(text) >= 2**62 else int(text)
