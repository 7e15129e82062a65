"""export, serve, app: a bundle in front of users (ONNX, the HTTP API, the web app)."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import sys
from dataclasses import Field, fields, replace

from cnnlab.app.launch import UPLOAD_LIMIT_MB  # stdlib only: the parser reads it
from cnnlab.cli.common import add_backend_arguments, add_no_record, add_require_signed
from cnnlab.errors import CnnlabError
from cnnlab.serve.limits import Flag, ServeLimits, flag_of


def register(sub: argparse._SubParsersAction) -> None:
    _add_export_serve(sub)
    _add_app(sub)


log = logging.getLogger("cnnlab")


def _add_export_serve(sub: argparse._SubParsersAction) -> None:
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
    p.add_argument("--allowed-host", action="append", metavar="NAME", dest="allowed_hosts",
                   help="a Host name clients use to reach the server; repeat for more; "
                   "'*.example.com' for subdomains, '*' for any (default localhost, "
                   "127.0.0.1, ::1 and --host). Others get 400; probes answer any")  # fmt: skip
    add_backend_arguments(p)
    add_limit_arguments(p)
    p.add_argument("--access-log", action="store_true", help="log every request")
    add_require_signed(p)
    add_no_record(p)
    p.add_argument("--tokens", metavar="FILE",
                   help="ask every request but the health probes for 'Authorization: Bearer "
                   "TOKEN' of a token in FILE (names and hashes: `cnnlab token add`); FILE is "
                   "re-read when it changes, so a revoked token stops working at once")  # fmt: skip
    p.set_defaults(func=cmd_serve)


def add_limit_arguments(p: argparse.ArgumentParser) -> None:
    """A flag for each ServeLimits field that has one: its default and help are the field's."""
    for f, flag in limit_flags():
        default = f.default / flag.scale if flag.scale != 1 else f.default
        unit = f"{flag.unit}; " if flag.unit else ""
        p.add_argument(f"--{flag.name}", type=float if flag.scale != 1 else f.type,
                       default=default, help=f"{flag.help} ({unit}default {default:g})")  # fmt: skip


def limit_flags() -> list[tuple[Field, Flag]]:
    """The ServeLimits fields `cnnlab serve` sets, each with its flag (named, when the field
    does not say otherwise, for the field)."""
    found = []
    for f in fields(ServeLimits):
        if flag := flag_of(f):
            found.append((f, replace(flag, name=flag.name or f.name.replace("_", "-"))))
    return found


def serve_limits(args: argparse.Namespace) -> ServeLimits:
    """The ServeLimits the flags ask for; a count below 1, or a time or size that is not a
    positive number, is refused naming its flag."""
    given = {}
    for f, flag in limit_flags():
        value = getattr(args, flag.name.replace("-", "_"))
        if f.type is int and flag.scale == 1:
            if value < 1:
                raise CnnlabError(f"--{flag.name} must be at least 1")
        elif flag.zero_ok and not 0 <= value < float("inf"):
            raise CnnlabError(f"--{flag.name} must not be negative")
        elif not flag.zero_ok and not 0 < value < float("inf"):
            raise CnnlabError(f"--{flag.name} must be a positive number")
        given[f.name] = f.type(value * flag.scale) if flag.scale != 1 else value
    limits = ServeLimits(**given)
    limits.max_queue = max(limits.max_queue, 4 * limits.max_batch)
    return limits


def cmd_export(args: argparse.Namespace) -> int:
    from cnnlab.bundle.loading import load_bundle
    from cnnlab.deploy.onnx import export_onnx, parity_images

    if args.parity_images < 1:
        raise CnnlabError("--parity-images must be at least 1")
    bundle = load_bundle(args.bundle)
    images, source = parity_images(bundle, args.images, args.parity_images)
    _, result = export_onnx(bundle, args.onnx, images, source)
    pre = bundle.preprocess
    print(result.parity.describe())
    outputs = ", ".join(f"'{name}'" for name in result.outputs)
    print(
        f"wrote {result.path} ({result.size_bytes / 1e6:.2f} MB; input 'images' uint8 "
        f"[batch, {pre.channels}, {pre.size[0]}, {pre.size[1]}], normalisation inside; outputs "
        f"{outputs}; {result.seconds:.1f} s)"
    )
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from cnnlab.lazy import loading_at_start

    with loading_at_start():
        app, limits = _serving_app(args)
    from cnnlab.serve.server import serve

    serve(app, args.host, args.port, limits, access_log=args.access_log)
    return 0


def _serving_app(args: argparse.Namespace):
    """Everything `serve` checks and loads before it listens (a bad flag, token file, bundle
    or store stops the start)."""
    from cnnlab.deploy.backends import load_with_backend
    from cnnlab.runtime.device import set_threads
    from cnnlab.serve import create_app
    from cnnlab.serve.guards import LOCAL_HOSTS, allowed_host_patterns
    from cnnlab.serve.tokens import TokenFile

    if not 0 <= args.port <= 65535:
        raise CnnlabError(f"--port must be 0-65535, got {args.port}")
    limits = serve_limits(args)
    if args.onnx and len(args.bundles) > 1:
        raise CnnlabError("--onnx FILE names one model's export; serve one bundle with it")
    hosts = allowed_host_patterns(args.allowed_hosts or [*LOCAL_HOSTS, args.host])
    tokens = TokenFile(args.tokens) if args.tokens else None  # a bad line: exit 2 before loading
    set_threads()
    bundles = [load_with_backend(b, args.backend, args.onnx, args.require_signed)
               for b in args.bundles]  # fmt: skip
    app = create_app(bundles, limits, hosts, record=not args.no_record, tokens=tokens)
    if app.state.records is not None:  # a store that cannot open stops the start, not a request
        log.info("decisions on record in %s", app.state.records.opened().where)
    if tokens is not None:
        log.info("tokens: %s (%s); TLS belongs to the proxy in front", args.tokens,
                 ", ".join(tokens.names()))  # fmt: skip
    elif not _is_loopback(args.host):
        log.warning("binding to %s without --tokens: anyone who reaches it is answered; add "
                    "--tokens FILE, behind a TLS proxy", args.host)  # fmt: skip
    if "*" in hosts:
        log.warning("--allowed-host '*': any Host is answered, so a web page can reach the API "
                    "through a name it points at this machine (DNS rebinding)")  # fmt: skip
    elif not args.allowed_hosts and not _is_loopback(args.host):
        log.warning("requests must name %s in their Host header; add --allowed-host NAME for "
                    "the names clients use", ", ".join(hosts))  # fmt: skip
    names = ", ".join(b.name for b in bundles)
    log.info("serving %s (%s backend) on http://%s:%d  (OpenAPI: /docs, /openapi.json)",
             names, args.backend, args.host, args.port)  # fmt: skip
    return app, limits


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _add_app(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "app",
        help="start the web app (Streamlit): classify, explain, model card",
        description="Starts `streamlit run` on cnnlab's app. Streamlit's own settings apply "
        "(.streamlit/config.toml, STREAMLIT_SERVER_PORT, STREAMLIT_SERVER_ADDRESS, ...); "
        f"cnnlab only fills in defaults you have not set (upload limit {UPLOAD_LIMIT_MB} MB, headless, "
        "no usage statistics).",
    )
    p.add_argument("bundle", nargs="?", metavar="BUNDLE|NAME",
                   help="bundle folder or shipped model name to open with (default: pneumonia)")  # fmt: skip
    p.add_argument("--runs", action="append", metavar="DIR",
                   help="folder searched for more bundles (repeatable; default: runs)")  # fmt: skip
    p.add_argument(
        "--port", type=_port, help="port to listen on (Streamlit's server.port; default 8501)"
    )
    p.add_argument("--host", metavar="ADDRESS",
                   help="address to listen on (server.address; default 127.0.0.1, this machine "
                   "only; 0.0.0.0 to share it)")  # fmt: skip
    add_require_signed(p)  # every bundle the app loads, the one named here checked before start
    add_no_record(p)
    p.set_defaults(func=cmd_app)


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"a port is a number from 1 to 65535, not {text!r}")
    return int(text)


def cmd_app(args: argparse.Namespace) -> int:
    from cnnlab.app.launch import locate_bundle, streamlit_command

    # a bad reference is exit 2 here, before any server starts
    bundle = locate_bundle(args.bundle) if args.bundle else None
    if args.require_signed and bundle:
        from cnnlab.bundle.loading import load_bundle

        load_bundle(bundle, require_signed=args.require_signed)
    flags = [f"--server.port={args.port}"] if args.port else []
    flags += [f"--server.address={args.host}"] if args.host else []
    argv, env = streamlit_command(bundle, args.runs, flags, require_signed=args.require_signed)
    if args.no_record:
        env["CNNLAB_RECORDS"] = "off"
    sys.stdout.flush()
    os.execve(argv[0], argv, env)  # the server replaces this process: signals reach it directly
    return 0  # pragma: no cover
