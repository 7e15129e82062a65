"""export (ONNX) and serve (the HTTP API)."""

from __future__ import annotations

import argparse
import ipaddress
import logging

from cnnlab.errors import CnnlabError
from cnnlab.serve.limits import ServeLimits  # loads nothing heavy: the parser reads defaults

log = logging.getLogger("cnnlab")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a bundle to ONNX, with a parity check")
    p.add_argument("bundle", help="bundle folder or shipped model name")
    p.add_argument("--onnx", required=True, metavar="FILE",
                   help="ONNX file to write (BUNDLE/model.onnx is found by --backend onnx)")  # fmt: skip
    p.add_argument("--images", nargs="+", metavar="PATH",
                   help="image files/folders for the parity check (default: the bundle's data)")  # fmt: skip
    p.add_argument("--parity-images", type=int, default=64, metavar="N",
                   help="how many images the parity check uses (default 64)")  # fmt: skip
    p.set_defaults(func=cmd_export)

    d = ServeLimits()
    p = sub.add_parser("serve", help="serve bundles over HTTP (FastAPI + uvicorn)")
    p.add_argument("bundles", nargs="+", metavar="BUNDLE",
                   help="bundle folder(s) or shipped model name(s); the first is the default")  # fmt: skip
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--allowed-host", action="append", metavar="NAME", dest="allowed_hosts",
                   help="a Host name clients use to reach the server; repeat for more; "
                   "'*.example.com' for subdomains, '*' for any (default localhost, "
                   "127.0.0.1, ::1 and --host). Others get 400; probes answer any")  # fmt: skip
    add_backend_arguments(p)
    p.add_argument("--max-images", type=int, default=d.max_images,
                   help=f"images per request (default {d.max_images})")  # fmt: skip
    p.add_argument("--max-request-mb", type=float, default=d.max_request_bytes / 2**20,
                   help=f"request size (MiB; default {d.max_request_bytes / 2**20:g})")  # fmt: skip
    p.add_argument("--max-batch", type=int, default=d.max_batch,
                   help=f"images per forward pass (default {d.max_batch})")  # fmt: skip
    p.add_argument("--max-wait-ms", type=float, default=d.max_wait_ms,
                   help=f"how long a batch waits for requests on their way (default "
                   f"{d.max_wait_ms:g})")  # fmt: skip
    p.add_argument("--max-request-mp", type=float, default=d.max_request_pixels / 1e6,
                   help=f"megapixels per request, summed over its images (default "
                   f"{d.max_request_pixels / 1e6:g})")  # fmt: skip
    p.add_argument("--time-budget-s", type=float, default=d.time_budget_s,
                   help="seconds from a received request to its answer, queue included; a "
                   "request that would wait longer gets 503 at once (default "
                   f"{d.time_budget_s:g})")  # fmt: skip
    p.add_argument("--read-timeout-s", type=float, default=d.read_timeout_s,
                   help=f"seconds for a request body to arrive, else 408 (default "
                   f"{d.read_timeout_s:g})")  # fmt: skip
    p.add_argument("--max-requests", type=int, default=d.max_requests,
                   help="requests read or answered at once; more get 503 with Retry-After "
                   f"(probes never do; default {d.max_requests})")  # fmt: skip
    p.add_argument("--max-connections", type=int, default=d.max_connections,
                   help="open connections, idle ones included; one opened past it gets 503 "
                   f"with Retry-After and is closed (probes are answered; default "
                   f"{d.max_connections})")  # fmt: skip
    p.add_argument("--header-timeout-s", type=float, default=d.header_timeout_s,
                   help="seconds a connection has, from opening or from its last answer, to "
                   f"send a whole request head, else it is closed (default {d.header_timeout_s:g})")  # fmt: skip
    p.add_argument("--shutdown-timeout-s", type=float, default=d.shutdown_timeout_s,
                   help="on SIGTERM: answer requests in flight, then exit within this many "
                   f"seconds whatever clients do (default {d.shutdown_timeout_s:g})")  # fmt: skip
    p.add_argument("--access-log", action="store_true", help="log every request")
    add_require_signed(p)
    p.set_defaults(func=cmd_serve)


BACKENDS = ("torch", "onnx")  # = cnnlab.deploy.backends.BACKENDS, whose import loads torch:
# building the parser must not (it cost every cnnlab command ~5 s on 2 cores)


def add_backend_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", choices=BACKENDS, default="torch",
                   help="inference engine: PyTorch or ONNX Runtime (default torch)")  # fmt: skip
    p.add_argument("--onnx", metavar="FILE",
                   help="with --backend onnx: the exported file (default BUNDLE/model.onnx, "
                   "else an export in memory)")  # fmt: skip


def add_require_signed(p: argparse.ArgumentParser) -> None:
    p.add_argument("--require-signed", metavar="PUBLIC.pem",
                   help="refuse a bundle whose bundle.sig is missing or does not verify with "
                   "this public key (or CA certificate); see `cnnlab sign`")  # fmt: skip


def cmd_export(args: argparse.Namespace) -> int:
    from cnnlab.bundle import load_bundle
    from cnnlab.deploy.onnx import export_onnx, parity_images

    if args.parity_images < 1:
        raise CnnlabError("--parity-images must be at least 1")
    bundle = load_bundle(args.bundle)
    images, source = parity_images(bundle, args.images, args.parity_images)
    _, result = export_onnx(bundle, args.onnx, images, source)
    pre = bundle.preprocess
    print(result.parity.describe())
    print(
        f"wrote {result.path} ({result.size_bytes / 1e6:.2f} MB; input 'images' uint8 "
        f"[batch, {pre.channels}, {pre.size[0]}, {pre.size[1]}], normalisation inside; outputs "
        f"'logits' and 'probabilities'; {result.seconds:.1f} s)"
    )
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from cnnlab.bundle import load_bundle
    from cnnlab.deploy.backends import use_backend
    from cnnlab.runtime.device import set_threads
    from cnnlab.serve import create_app
    from cnnlab.serve.guards import LOCAL_HOSTS, allowed_host_patterns
    from cnnlab.serve.server import serve

    if not 0 <= args.port <= 65535:
        raise CnnlabError(f"--port must be 0-65535, got {args.port}")
    for name in ("max_images", "max_batch", "max_requests", "max_connections"):
        if getattr(args, name) < 1:
            raise CnnlabError(f"--{name.replace('_', '-')} must be at least 1")
    for name in ("max_request_mb", "max_request_mp", "time_budget_s", "read_timeout_s",
                 "header_timeout_s", "shutdown_timeout_s"):  # fmt: skip
        if not 0 < getattr(args, name) < float("inf"):
            raise CnnlabError(f"--{name.replace('_', '-')} must be a positive number")
    if not 0 <= args.max_wait_ms < float("inf"):
        raise CnnlabError("--max-wait-ms must not be negative")
    if args.onnx and len(args.bundles) > 1:
        raise CnnlabError("--onnx FILE names one model's export; serve one bundle with it")
    hosts = allowed_host_patterns(args.allowed_hosts or [*LOCAL_HOSTS, args.host])
    set_threads()
    bundles = [use_backend(load_bundle(b, require_signed=args.require_signed), args.backend,
                           args.onnx) for b in args.bundles]  # fmt: skip
    limits = ServeLimits(
        max_request_bytes=int(args.max_request_mb * 2**20),
        max_images=args.max_images,
        max_batch=args.max_batch,
        max_wait_ms=args.max_wait_ms,
        max_queue=max(ServeLimits.max_queue, 4 * args.max_batch),
        max_request_pixels=int(args.max_request_mp * 1e6),
        read_timeout_s=args.read_timeout_s,
        time_budget_s=args.time_budget_s,
        max_requests=args.max_requests,
        max_connections=args.max_connections,
        header_timeout_s=args.header_timeout_s,
        shutdown_timeout_s=args.shutdown_timeout_s,
    )
    app = create_app(bundles, limits, hosts)
    if not _is_loopback(args.host):
        log.warning(
            "binding to %s: the API has no authentication; expose it only behind a proxy that has",
            args.host,
        )
    if "*" in hosts:
        log.warning("--allowed-host '*': any Host is answered, so a web page can reach the API "
                    "through a name it points at this machine (DNS rebinding)")  # fmt: skip
    elif not args.allowed_hosts and not _is_loopback(args.host):
        log.warning("requests must name %s in their Host header; add --allowed-host NAME for "
                    "the names clients use", ", ".join(hosts))  # fmt: skip
    names = ", ".join(b.name for b in bundles)
    log.info("serving %s (%s backend) on http://%s:%d  (OpenAPI: /docs, /openapi.json)",
             names, args.backend, args.host, args.port)  # fmt: skip
    serve(app, args.host, args.port, limits, access_log=args.access_log)
    return 0


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
