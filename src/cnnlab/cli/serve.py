"""export (ONNX) and serve (the HTTP API)."""

from __future__ import annotations

import argparse
import ipaddress
import logging

from cnnlab.errors import CnnlabError

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

    p = sub.add_parser("serve", help="serve bundles over HTTP (FastAPI + uvicorn)")
    p.add_argument("bundles", nargs="+", metavar="BUNDLE",
                   help="bundle folder(s) or shipped model name(s); the first is the default")  # fmt: skip
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000)
    add_backend_arguments(p)
    p.add_argument("--max-images", type=int, default=32, help="images per request (default 32)")
    p.add_argument("--max-request-mb", type=float, default=32.0, help="request size (MiB)")
    p.add_argument("--max-batch", type=int, default=32, help="images per forward pass")
    p.add_argument("--max-wait-ms", type=float, default=5.0,
                   help="how long a batch waits for requests on their way (default 5)")  # fmt: skip
    p.add_argument("--max-request-mp", type=float, default=128.0,
                   help="megapixels per request, summed over its images (default 128)")  # fmt: skip
    p.add_argument("--time-budget-s", type=float, default=10.0,
                   help="seconds from a received request to its answer, queue included; a "
                   "request that would wait longer gets 503 at once (default 10)")  # fmt: skip
    p.add_argument("--read-timeout-s", type=float, default=30.0,
                   help="seconds for a request body to arrive, else 408 (default 30)")  # fmt: skip
    p.add_argument("--max-connections", type=int, default=64,
                   help="concurrent connections; more get 503 (default 64)")  # fmt: skip
    p.add_argument("--shutdown-timeout-s", type=float, default=10.0,
                   help="on SIGTERM: answer requests in flight, then exit within this many "
                   "seconds whatever clients do (default 10)")  # fmt: skip
    p.add_argument("--access-log", action="store_true", help="log every request")
    p.set_defaults(func=cmd_serve)


BACKENDS = ("torch", "onnx")  # = cnnlab.deploy.backends.BACKENDS, whose import loads torch:
# building the parser must not (it cost every cnnlab command ~5 s on 2 cores)


def add_backend_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", choices=BACKENDS, default="torch",
                   help="inference engine: PyTorch or ONNX Runtime (default torch)")  # fmt: skip
    p.add_argument("--onnx", metavar="FILE",
                   help="with --backend onnx: the exported file (default BUNDLE/model.onnx, "
                   "else an export in memory)")  # fmt: skip


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
    import uvicorn

    from cnnlab.bundle import load_bundle
    from cnnlab.deploy.backends import use_backend
    from cnnlab.runtime.device import set_threads
    from cnnlab.serve import ServeLimits, create_app

    if not 0 <= args.port <= 65535:
        raise CnnlabError(f"--port must be 0-65535, got {args.port}")
    for name in ("max_images", "max_batch", "max_connections"):
        if getattr(args, name) < 1:
            raise CnnlabError(f"--{name.replace('_', '-')} must be at least 1")
    for name in ("max_request_mb", "max_request_mp", "time_budget_s", "read_timeout_s",
                 "shutdown_timeout_s"):  # fmt: skip
        if not 0 < getattr(args, name) < float("inf"):
            raise CnnlabError(f"--{name.replace('_', '-')} must be a positive number")
    if not 0 <= args.max_wait_ms < float("inf"):
        raise CnnlabError("--max-wait-ms must not be negative")
    if args.onnx and len(args.bundles) > 1:
        raise CnnlabError("--onnx FILE names one model's export; serve one bundle with it")
    set_threads()
    bundles = [use_backend(load_bundle(b), args.backend, args.onnx) for b in args.bundles]
    limits = ServeLimits(
        max_request_bytes=int(args.max_request_mb * 2**20),
        max_images=args.max_images,
        max_batch=args.max_batch,
        max_wait_ms=args.max_wait_ms,
        max_queue=max(512, 4 * args.max_batch),
        max_request_pixels=int(args.max_request_mp * 1e6),
        read_timeout_s=args.read_timeout_s,
        time_budget_s=args.time_budget_s,
    )
    app = create_app(bundles, limits)
    if not _is_loopback(args.host):
        log.warning(
            "binding to %s: the API has no authentication; expose it only behind a proxy that has",
            args.host,
        )
    names = ", ".join(b.name for b in bundles)
    log.info("serving %s (%s backend) on http://%s:%d  (OpenAPI: /docs, /openapi.json)",
             names, args.backend, args.host, args.port)  # fmt: skip
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning",
                access_log=args.access_log, server_header=False,
                limit_concurrency=args.max_connections,
                timeout_graceful_shutdown=args.shutdown_timeout_s)  # fmt: skip
    return 0


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
