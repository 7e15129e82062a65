"""Local networking: one helper shared by the torchrun and server launches in tests and benchmarks."""

from __future__ import annotations

import socket


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on `host` now (the system picks it; bind it soon, it is not reserved)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]
