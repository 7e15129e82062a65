"""Networking: a free local port (torchrun and server launches in tests and benchmarks), and
whether a download host answers at all (so an offline machine fails fast, with a clear message)."""

from __future__ import annotations

import socket
import urllib.parse


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on `host` now (the system picks it; bind it soon, it is not reserved)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def reachable(url: str, timeout: float = 3.0) -> bool:
    """Whether `url`'s host accepts a connection within `timeout` seconds (file:// always does)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "file":
        return True
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False
