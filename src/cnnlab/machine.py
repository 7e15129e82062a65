"""What this machine can hold, read once per question: the cores and the memory a process may
use (the physical memory, or less where a container's cgroup caps it), and how many threads or
processes per core cnnlab runs at most."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

# threads (train.threads) or worker processes (--workers) per core, at most: past this they only
# contend, and enough of them fail to start or fork until the machine stops
MAX_PER_CORE = 4

_CGROUP_LIMITS = (
    Path("/sys/fs/cgroup/memory.max"),  # cgroup v2
    Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"),  # cgroup v1
)


def available_cpus() -> int:
    """The cores this process may run on (its affinity: a container or `taskset` may give it
    fewer than the machine has)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


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
