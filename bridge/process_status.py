"""A process's memory and threads, from /proc (Linux): what the benchmarks watch for leaks."""

from __future__ import annotations

from pathlib import Path


def proc_status(pid: int | str = "self") -> dict[str, int]:
    """VmRSS and VmHWM (KiB) and Threads of a running process (default: this one)."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM", "Threads"):
            values[key] = int(rest.split()[0])
    return {"rss_kib": values["VmRSS"], "peak_rss_kib": values["VmHWM"],
            "threads": values["Threads"]}
