"""uvicorn, with the two things it lacks for a server that must not be starved (uvicorn 0.55):

- A header timeout. uvicorn's `timeout_keep_alive` starts only after a response and restarts on
  every byte received, so a connection that never sends a request, or sends its head one byte
  at a time, is held for ever. `GuardedH11Protocol` gives each connection `header_timeout_s`
  from its opening (and from each answer) to deliver a whole request head, else closes it.
  It also takes the connection cap from `limit_concurrency`, which counts idle connections
  against requests and answers in plain text: a connection past `max_connections` gets the
  API's JSON 503 with Retry-After (probes are answered) and is closed; requests under way are
  capped by the app (guards.RequestCap), where idle connections do not count.
- A shutdown deadline that holds. `timeout_graceful_shutdown` bounds only the wait for
  requests; cancelling them, the app's own shutdown and the interpreter's exit (threads
  joined, torch torn down) come after it: 2 s of deadline measured 2.2 s to exit, 10 s
  11.7 s. `DeadlineServer` gives uvicorn the deadline less a reserve for those, and exits the
  process at the deadline itself if they still run.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from cnnlab.serve.guards import over_capacity

log = logging.getLogger("cnnlab")
EXIT_S = 0.1  # os._exit to a reaped process, with room (measured about 30 ms on 2 loaded cores)


class GuardedH11Protocol(H11Protocol):
    """One connection: closed unless a whole request head arrives within the header timeout
    of its opening or of its previous answer; answered by `over_capacity` if opened past the
    connection cap. Bound to its limits by `guarded_protocol`."""

    limits: Any  # a ServeLimits, set on the subclass

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.head_timer: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        lim = self.limits
        if len(self.connections) > lim.max_connections:
            self.app = over_capacity(self.app, lim.max_connections, lim.max_request_bytes,
                                     lim.read_timeout_s)  # fmt: skip
        self._await_head()

    def _await_head(self) -> None:
        self._stop_head_timer()
        self.head_timer = self.loop.call_later(self.limits.header_timeout_s, self._head_overdue)

    def _stop_head_timer(self) -> None:
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None

    def _head_overdue(self) -> None:
        self.head_timer = None
        if self.cycle is None or self.cycle.response_complete:  # no request under way
            self.transport.close()

    def handle_events(self) -> None:
        cycle = self.cycle
        super().handle_events()
        if self.cycle is not cycle:  # a whole request head arrived
            self._stop_head_timer()

    def on_response_complete(self) -> None:
        self._await_head()  # first: a pipelined request that the call below starts stops it
        super().on_response_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)


def guarded_protocol(limits: Any) -> type[GuardedH11Protocol]:
    return type("GuardedH11Protocol", (GuardedH11Protocol,), {"limits": limits})


class DeadlineServer(uvicorn.Server):
    """uvicorn's server, exiting within `deadline_s` of a SIGTERM or SIGINT whatever clients
    do: the graceful wait is the deadline less `reserve_s`, and a watchdog thread ends the
    process at the deadline if the app's shutdown and the interpreter's exit run over."""

    def __init__(self, config: uvicorn.Config, deadline_s: float, reserve_s: float) -> None:
        config.timeout_graceful_shutdown = max(deadline_s - reserve_s, 0.0)  # type: ignore[assignment]
        super().__init__(config)
        self.deadline_s = deadline_s
        self.watchdog: threading.Thread | None = None

    def handle_exit(self, sig: int, frame: Any) -> None:
        self.start_watchdog()
        super().handle_exit(sig, frame)

    async def shutdown(self, sockets: Any = None) -> None:
        self.start_watchdog()  # should_exit set without a signal (embedding, tests)
        await super().shutdown(sockets)

    def start_watchdog(self) -> None:
        if self.watchdog is not None:
            return
        started = time.monotonic()

        def watch() -> None:  # ending a process takes a few ms: start that before the deadline
            time.sleep(max(self.deadline_s - EXIT_S - (time.monotonic() - started), 0.0))
            log.error("shutdown deadline of %g s reached: exiting now", self.deadline_s)
            for handler in logging.getLogger().handlers + log.handlers:
                handler.flush()
            os._exit(1)

        self.watchdog = threading.Thread(target=watch, name="cnnlab-deadline", daemon=True)
        self.watchdog.start()


def serve(app: Any, host: str, port: int, limits: Any, access_log: bool = False) -> None:
    """Run `app` until SIGTERM/SIGINT, with `limits` (a ServeLimits) on every connection."""
    config = uvicorn.Config(
        app, host=host, port=port, log_level="warning", access_log=access_log,
        server_header=False, http=guarded_protocol(limits), ws="none", lifespan="on",
        timeout_keep_alive=limits.keep_alive_s,  # type: ignore[arg-type]
    )  # fmt: skip
    DeadlineServer(config, limits.shutdown_timeout_s, limits.shutdown_reserve_s).run()
