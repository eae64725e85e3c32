"""A child process's memory, read from /proc."""

from __future__ import annotations

from pathlib import Path


def peak_rss_kib(pid: int) -> int:
    """The most resident memory the process ever had (VmHWM), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM in /proc status")
