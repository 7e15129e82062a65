"""What stands between a client and the model, as ASGI apps: the cap on requests under way, the
allowed Host names, and the answer a connection over the connection cap gets. Each refusal is
the API's JSON error with a Retry-After where waiting helps; the probes pass every guard, so a
busy or crowded server still says it is alive (a liveness probe that fails restarts it)."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from fastapi.responses import JSONResponse
from starlette.middleware.trustedhost import TrustedHostMiddleware

from cnnlab.errors import CnnlabError

LIVE, READY, HEALTHZ = "/v1/health/live", "/v1/health/ready", "/healthz"
PROBES = frozenset({LIVE, READY, HEALTHZ})
LOCAL_HOSTS = ("localhost", "127.0.0.1", "[::1]")

ASGIApp = Callable[[dict, Callable[[], Awaitable[dict]], Callable[[dict], Awaitable[None]]],
                   Awaitable[None]]  # fmt: skip


def json_error(status: int, code: str, detail: str, headers: dict | None = None) -> JSONResponse:
    """The API's one refusal body: {"error": code, "detail": message}."""
    return JSONResponse({"error": code, "detail": detail}, status_code=status, headers=headers)


def _is_probe(scope: dict) -> bool:
    return scope["type"] == "http" and scope["path"] in PROBES


class RequestCap:
    """At most `limit` requests read or answered at once (each may hold a whole upload in
    memory); past it a 503 at once. Counted here rather than by uvicorn's limit_concurrency,
    which counts idle connections too and answers in plain text without Retry-After."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit, self.under_way = app, limit, 0

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or _is_probe(scope):
            await self.app(scope, receive, send)
            return
        if self.under_way >= self.limit:
            # no Connection: close, so uvicorn reads past the unread body and the socket stays
            # usable (closing with a body unread would reset it, losing this answer)
            busy = json_error(503, "at_capacity", f"{self.under_way} requests are under way, "
                              f"the server's cap; retry after 1 s", {"Retry-After": "1"})  # fmt: skip
            await busy(scope, receive, send)
            return
        self.under_way += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.under_way -= 1


def allowed_host_patterns(hosts: Sequence[str]) -> list[str]:
    """Host names as the Host header spells them (IPv6 in brackets, lower case); '*' any,
    '*.example.com' its subdomains. A CnnlabError names a pattern Starlette would not take."""
    out = []
    for host in hosts:
        host = host.strip().lower()
        try:
            if ipaddress.ip_address(host).version == 6:
                host = f"[{host}]"
        except ValueError:
            pass
        if not host or "*" in host[1:] or (host.startswith("*") and host not in ("*",)
                                           and not host.startswith("*.")):  # fmt: skip
            raise CnnlabError(f"--allowed-host {host!r}: give a name, an address, "
                              "'*.example.com' or '*'")  # fmt: skip
        out.append(host)
    return out


class AllowedHosts:
    """Answer only requests whose Host names this server (DNS rebinding: a web page whose name
    an attacker points at 127.0.0.1 would otherwise read the API from a victim's browser).
    Starlette's TrustedHostMiddleware decides; this answers its refusal in the API's JSON.
    Probes answer any Host: a kubelet probes the pod's address, which no one can list."""

    def __init__(self, app: ASGIApp, hosts: Sequence[str]) -> None:
        self.app, self.hosts = app, allowed_host_patterns(hosts)
        self.judge = TrustedHostMiddleware(_mark_allowed, self.hosts, www_redirect=False)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or _is_probe(scope) or "*" in self.hosts:
            await self.app(scope, receive, send)
            return
        verdict: dict = {**scope, "cnnlab.host_allowed": False}
        await self.judge(verdict, receive, _discard)
        if verdict["cnnlab.host_allowed"]:
            await self.app(scope, receive, send)
            return
        host = dict(scope["headers"]).get(b"host", b"").decode("latin-1")[:100]
        refused = json_error(400, "host_not_allowed", f"Host {host!r} is not one this server "
                             f"answers to ({', '.join(self.hosts)}); start it with "
                             f"--allowed-host NAME for the name clients use")  # fmt: skip
        await refused(scope, receive, send)


async def _mark_allowed(scope: dict, receive: Any, send: Any) -> None:
    scope["cnnlab.host_allowed"] = True


async def _discard(message: dict) -> None:
    pass


def over_capacity(app: ASGIApp, limit: int, max_body: int, read_timeout_s: float) -> ASGIApp:
    """The app for a connection opened past the connection cap: probes are answered, the rest
    get a 503; then the connection closes. The body is read first (and dropped, up to the
    request size limit and read timeout) so that closing does not reset the socket before
    the client has read the answer."""

    async def answer(scope: dict, receive: Any, send: Any) -> None:
        async def closing(message: dict) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []),
                                                  (b"connection", b"close")]}  # fmt: skip
            await send(message)

        if scope["type"] != "http":
            return
        if _is_probe(scope):
            await app(scope, receive, closing)
            return
        await _drain(receive, max_body, read_timeout_s)
        busy = json_error(503, "too_many_connections", f"the server holds {limit} connections, "
                          "its cap; retry after 1 s", {"Retry-After": "1"})  # fmt: skip
        await busy(scope, receive, closing)

    return answer


async def _drain(receive: Any, max_body: int, timeout: float) -> None:
    seen = 0
    try:
        async with asyncio.timeout(timeout):
            while seen <= max_body:
                message = await receive()
                seen += len(message.get("body", b""))
                if message["type"] != "http.request" or not message.get("more_body"):
                    return
    except TimeoutError:
        pass
