"""app: the Streamlit web app over a bundle (and every other bundle found)."""

from __future__ import annotations

import argparse
import os
import sys

from cnnlab.app.launch import UPLOAD_LIMIT_MB  # stdlib only: the parser reads it


def register(sub: argparse._SubParsersAction) -> None:
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
    from cnnlab.cli.serve import add_require_signed

    add_require_signed(p)  # every bundle the app loads, the one named here checked before start
    p.set_defaults(func=cmd_app)


def cmd_app(args: argparse.Namespace) -> int:
    from cnnlab.app.launch import locate_bundle, streamlit_command

    # a bad reference is exit 2 here, before any server starts
    bundle = locate_bundle(args.bundle) if args.bundle else None
    if args.require_signed and bundle:
        from cnnlab.bundle.loading import load_bundle

        load_bundle(bundle, require_signed=args.require_signed)
    argv, env = streamlit_command(bundle, args.runs, require_signed=args.require_signed)
    sys.stdout.flush()
    os.execve(argv[0], argv, env)  # the server replaces this process: signals reach it directly
    return 0  # pragma: no cover
