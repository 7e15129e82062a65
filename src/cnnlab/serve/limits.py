"""Every bound of the HTTP API in one place: `create_app` and `cnnlab serve` read them here
(the CLI's defaults too), so a default is written once. Importing this loads nothing heavy:
the CLI's parser reads it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ServeLimits:
    """What one request may hold and how long it may take, how requests are batched, and what
    a client may hold of the server: connections, requests under way, time to shut down."""

    max_request_bytes: int = 32 * 2**20
    max_images: int = 32  # per request
    max_request_pixels: int = 128_000_000  # per request, summed over its images' headers
    max_batch: int = 32  # images per forward pass
    max_wait_ms: float = 5.0  # how long a batch waits for more requests on their way
    max_queue: int = 512  # images waiting before new requests get 503
    read_timeout_s: float = 30.0  # for the whole body to arrive (else 408)
    time_budget_s: float = 10.0  # from a received body to its answer: decoding, queue, model
    # requests read or answered at once (each may hold max_request_bytes: 64 x 32 MiB = 2 GiB);
    # past it JSON 503 + Retry-After. Idle connections and probes do not count
    max_requests: int = 64
    # open connections, idle ones included (each a file descriptor; 1,024 is a common process
    # limit); one opened past it gets JSON 503 + Retry-After and is closed; probes are answered
    max_connections: int = 512
    header_timeout_s: float = 10.0  # from opening, or from an answer, to a whole request head
    keep_alive_s: float = 5.0  # idle time after an answer before the connection is closed
    shutdown_timeout_s: float = 10.0  # from SIGTERM to the process's exit, whatever clients do

    @property
    def shutdown_reserve_s(self) -> float:
        """Of the shutdown deadline, what is kept for after the requests' grace: cancelling
        them, the app's shutdown and the interpreter's exit (0.2 s measured with a small model;
        past the deadline cnnlab.serve.server ends the process)."""
        return min(1.0, self.shutdown_timeout_s / 4)
