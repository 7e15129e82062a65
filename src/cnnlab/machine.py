"""What this machine can hold, read once per question: the memory a process may use (the
physical memory, or less where a container's cgroup caps it)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

_CGROUP_LIMITS = (
    Path("/sys/fs/cgroup/memory.max"),  # cgroup v2
    Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"),  # cgroup v1
)


def memory_bytes() -> int:
    """Bytes of memory this process may use: the physical memory, or the cgroup's cap if lower
    (a container sees the host's memory in /proc but is killed at its cap)."""
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        total = 2**62
    for path in _CGROUP_LIMITS:
        with contextlib.suppress(OSError, ValueError):
            text = path.read_text().strip()
            if text.isdigit():
                total = min(total, int(text))
    return total
