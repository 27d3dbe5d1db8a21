"""Small measures the benchmarks share: a p99 and a process's resident memory."""

from pathlib import Path


def p99(samples: list[float]) -> float:
    """The 99th percentile of `samples` (the nearest rank at or below it)."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def rss(pid: int | None) -> int:
    """The process's resident set size in bytes (VmRSS), 0 when it is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except (OSError, TypeError):
        return 0
    return next((int(line.split()[1]) * 1024 for line in text.splitlines() if line.startswith("VmRSS:")), 0)
