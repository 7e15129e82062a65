"""token add, token revoke: who may call `cnnlab serve --tokens FILE`."""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("token", help="add or revoke an API token (cnnlab serve --tokens FILE)",
                       description="A token file holds a name and the token's SHA-256 a line, "
                       "never a token. A running server re-reads it when it changes.")  # fmt: skip
    verbs = p.add_subparsers(dest="verb", metavar="add|revoke", required=True)
    add = verbs.add_parser("add", help="make a token named NAME: printed once, its hash appended")
    add.add_argument("name", metavar="NAME",
                     help="who holds it (e.g. ward-7, pacs-router): the client on record")  # fmt: skip
    add.add_argument(
        "--file", required=True, metavar="FILE", help="the token file (made if missing)"
    )
    add.set_defaults(func=cmd_add)
    revoke = verbs.add_parser("revoke", help="remove the token named NAME (no restart needed)")
    revoke.add_argument("name", metavar="NAME")
    revoke.add_argument("--file", required=True, metavar="FILE", help="the token file")
    revoke.set_defaults(func=cmd_revoke)


def cmd_add(args: argparse.Namespace) -> int:
    from cnnlab.serve.tokens import add_token

    token = add_token(args.file, args.name)
    print(token)
    print(f"token {args.name!r} added to {args.file}: keep it now, it is shown only this once "
          "(clients send 'Authorization: Bearer TOKEN')", file=sys.stderr)  # fmt: skip
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    from cnnlab.serve.tokens import revoke_token

    revoke_token(args.file, args.name)
    print(f"token {args.name!r} revoked in {args.file}; a running server refuses it from its "
          "next request", file=sys.stderr)  # fmt: skip
    return 0
