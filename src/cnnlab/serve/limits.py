"""Every bound of the HTTP API in one place: `create_app` reads them, and `cnnlab serve` builds
its flags from these fields (name, default, type, help), so a limit is written once. Importing
this loads nothing heavy: the CLI's parser reads it."""

from dataclasses import Field, dataclass, field
from typing import Any

from cnnlab.fileio import MIB


@dataclass(frozen=True)
class Flag:
    """How `cnnlab serve` sets a field: `--NAME` counting in `unit` (the field holds
    `value x scale`: a flag in MiB sets bytes), with `help` and the smallest sensible value."""

    help: str
    name: str = ""  # default: the field's name, dashed
    unit: str = ""  # shown in the help: "MiB", "megapixels"
    scale: float = 1
    zero_ok: bool = False  # 0 is allowed (else a count is at least 1, a time or size positive)


def limit(default: Any, help: str | None = None, **flag: Any) -> Any:
    """A ServeLimits field; with `help`, `cnnlab serve` gets a flag for it."""
    return field(default=default, metadata={"flag": Flag(help, **flag)} if help else {})


def flag_of(f: Field) -> Flag | None:
    return f.metadata.get("flag")


@dataclass
class ServeLimits:
    """What one request may hold and how long it may take, how requests are batched, and what
    a client may hold of the server: connections, requests under way, time to shut down."""

    max_request_bytes: int = limit(32 * MIB, "request size", name="max-request-mb", unit="MiB",
                                   scale=MIB)  # fmt: skip
    max_images: int = limit(32, "images per request")
    max_request_pixels: int = limit(
        128_000_000, "pixels per request, summed over its images' headers",
        name="max-request-mp", unit="megapixels", scale=1e6,
    )  # fmt: skip
    max_batch: int = limit(32, "images per forward pass")
    max_wait_ms: float = limit(5.0, "how long a batch waits for requests on their way", unit="ms",
                               zero_ok=True)  # fmt: skip
    # images waiting before new requests get 503; `cnnlab serve` keeps room for 4 batches
    max_queue: int = 512
    read_timeout_s: float = limit(30.0, "seconds for a request body to arrive, else 408")
    time_budget_s: float = limit(
        10.0, "seconds from a received request to its answer, queue included; a request that "
        "would wait longer gets 503 at once",
    )  # fmt: skip
    # each request under way may hold max_request_bytes: 64 x 32 MiB = 2 GiB
    max_requests: int = limit(
        64, "requests read or answered at once (idle connections and probes do not count); more "
        "get 503 with Retry-After",
    )  # fmt: skip
    # each connection is a file descriptor; 1,024 is a common process limit
    max_connections: int = limit(
        512, "open connections, idle ones included; one opened past it gets 503 with "
        "Retry-After and is closed, though probes are answered",
    )  # fmt: skip
    header_timeout_s: float = limit(
        10.0, "seconds a connection has, from opening or from its last answer, to send a whole "
        "request head, else it is closed",
    )  # fmt: skip
    keep_alive_s: float = 5.0  # idle time after an answer before the connection is closed
    shutdown_timeout_s: float = limit(
        10.0, "on SIGTERM: answer requests in flight, then exit within this many seconds "
        "whatever clients do",
    )  # fmt: skip

    @property
    def shutdown_reserve_s(self) -> float:
        """Of the shutdown deadline, what is kept for after the requests' grace: cancelling
        them, the app's shutdown and the interpreter's exit (0.2 s measured with a small model;
        past the deadline cnnlab.serve.server ends the process)."""
        return min(1.0, self.shutdown_timeout_s / 4)
