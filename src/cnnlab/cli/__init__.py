"""The `cnnlab` command. Each subcommand parses its arguments and calls one library function.

Subcommands live in modules of this package, each with a `register(subparsers)` function.
Exit status: 0 success, 2 bad input (one clear line on stderr), 1 an unexpected error.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from importlib import import_module

from cnnlab.errors import CnnlabError
from cnnlab.fileio import DEFAULT_MAX_FILE_MB, MAX_FILE_ENV

MODULES = [  # each a verb group with a `register(subparsers)`; --help lists them in this order
    "cnnlab.cli.architecture",
    "cnnlab.cli.datasets",
    "cnnlab.cli.training",
    "cnnlab.cli.judging",
    "cnnlab.cli.fingerprinting",
    "cnnlab.cli.comparing",
    "cnnlab.cli.monitoring",
    "cnnlab.cli.predicting",
    "cnnlab.cli.trust",
    "cnnlab.cli.deployment",
    "cnnlab.cli.auditing",
    "cnnlab.cli.access",
    "cnnlab.cli.teaching",
    "cnnlab.cli.hospital",
]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, like every other bad input
        self.exit(2, f"{self.prog}: error: {_closest_choice(message)} (see {self.prog} --help)\n")


def _closest_choice(message: str) -> str:
    """argparse's "invalid choice: 'sumary' (choose from ...)" led by the closest choices."""
    import difflib
    import re

    found = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
    if not found:
        return message
    choices = re.findall(r"'([^']*)'", found.group(2))
    near = difflib.get_close_matches(found.group(1), choices, n=3, cutoff=0.6)
    return f"{message}; did you mean {' or '.join(near)}?" if near else message


def build_parser() -> argparse.ArgumentParser:
    from cnnlab.version import __version__

    parser = _Parser(
        prog="cnnlab",
        description="Build, inspect, train, explain and deploy CNN image classifiers.",
    )
    parser.add_argument("--version", action="version", version=f"cnnlab {__version__}")
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="only warnings and errors on stderr"
    )
    parser.add_argument("--max-file-mb", type=float, metavar="MB",
                        help="the largest single file any command reads (images, recipes, "
                        f"bundle.json); default {DEFAULT_MAX_FILE_MB:g}, or ${MAX_FILE_ENV}")  # fmt: skip
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in MODULES:
        import_module(name).register(sub)
    return parser


def setup_logging(quiet: bool = False) -> None:
    logger = logging.getLogger("cnnlab")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
    logger.propagate = False


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for stream in (sys.stdout, sys.stderr):  # a file name that is not UTF-8 must not crash a print
        with contextlib.suppress(AttributeError, ValueError):
            stream.reconfigure(errors="backslashreplace")
    setup_logging(args.quiet)
    try:
        if args.max_file_mb is not None:
            if not 0 < args.max_file_mb < float("inf"):
                raise CnnlabError(
                    f"--max-file-mb must be a positive number, got {args.max_file_mb}"
                )
            os.environ[MAX_FILE_ENV] = repr(args.max_file_mb)  # worker processes too
        return int(args.func(args) or 0)
    except CnnlabError as e:
        print(f"cnnlab: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cnnlab: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as e:  # noqa: BLE001 - the last line of defence: no traceback for users
        if os.environ.get("CNNLAB_DEBUG"):
            raise
        print(
            f"cnnlab: internal error: {type(e).__name__}: {e} (set CNNLAB_DEBUG=1 for a traceback)",
            file=sys.stderr,
        )
        return 1
