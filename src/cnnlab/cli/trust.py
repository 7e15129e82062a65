"""check, seal, sign: is a bundle what it says it is, and who vouches for it."""

from __future__ import annotations

import argparse
import json
import sys

from cnnlab.cli.common import add_require_signed
from cnnlab.errors import CnnlabError


def register(sub: argparse._SubParsersAction) -> None:
    _add_check(sub)
    _add_seal(sub)
    _add_sign(sub)


def _add_check(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "check",
        help="check a bundle: its seal, paths, fields and bounds, weights, head, signature",
        description="Run every check a load makes, and say what each found. Exit status 0 when "
        "the bundle is sound, 2 (and the first problem) when it is not.",
    )
    p.add_argument("bundle", help="bundle folder or shipped model name")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    add_require_signed(p)
    p.set_defaults(func=cmd_check)


def _add_seal(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "seal",
        help="trust a reviewed bundle as it is: write its seal (manifest.json)",
        description="Every command that writes a bundle seals it. A bundle made before cnnlab "
        "sealed bundles, or edited by hand, is refused until a person who has reviewed it runs "
        "this: every other check runs first, then manifest.json records each file's size and "
        "sha256. What changed since the previous seal is printed; a signature over the old "
        "contents is removed.",
    )  # fmt: skip
    p.add_argument("bundle", help="bundle folder")
    p.set_defaults(func=cmd_seal)


def _add_sign(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sign",
        help="sign a bundle's files with a private key (OpenSSF model-signing, offline)",
        description="Writes BUNDLE/bundle.sig (a Sigstore bundle, as `model_signing` makes) over "
        "exactly the bundle's sealed files and manifest.json, after checking the bundle loads. "
        "predict, serve, app and check verify it with --require-signed PUBLIC.pem (or the CA "
        "certificate, for a certificate signature).",
    )  # fmt: skip
    p.add_argument("bundle", help="bundle folder")
    p.add_argument("--key", required=True, metavar="PRIVATE.pem",
                   help="elliptic-curve private key (PEM)")  # fmt: skip
    p.add_argument("--certificate", metavar="CERT.pem",
                   help="the signing certificate of that key: a certificate signature")  # fmt: skip
    p.add_argument("--chain", nargs="+", default=[], metavar="CA.pem",
                   help="with --certificate: the certificates up to the root of trust")  # fmt: skip
    p.set_defaults(func=cmd_sign)


def cmd_check(args: argparse.Namespace) -> int:
    from cnnlab.bundle.loading import check_bundle

    checks, bundle = check_bundle(args.bundle, args.require_signed)
    if args.json:
        out = {"bundle": args.bundle, "ok": bundle is not None,
               "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in checks]}  # fmt: skip
        json.dump(out, sys.stdout)
        sys.stdout.write("\n")
    else:
        print(f"{args.bundle}: {'sound' if bundle is not None else 'NOT usable'}")
        for c in checks:
            print(f"  {'ok  ' if c.ok else 'FAIL'}  {c.name:<13}{c.detail}")
    if bundle is None:
        print(f"cnnlab: error: {checks[-1].detail}", file=sys.stderr)
        return 2
    return 0


def cmd_seal(args: argparse.Namespace) -> int:
    from cnnlab.bundle.loading import seal_reviewed

    path, changes = seal_reviewed(args.bundle)
    print(f"sealed {path}: " + ("; ".join(changes) if changes else "nothing changed"))
    return 0


def cmd_sign(args: argparse.Namespace) -> int:
    from cnnlab.bundle.loading import load_bundle
    from cnnlab.bundle.sign import sign_bundle

    if args.chain and not args.certificate:
        raise CnnlabError("--chain goes with --certificate")
    bundle = load_bundle(args.bundle)  # only a bundle that loads, seal verified, is signed
    sig = sign_bundle(bundle.path, bundle.sealed, args.key, args.certificate, args.chain)
    print(f"signed {bundle.path}: {sig.name} covers manifest.json, {', '.join(bundle.sealed)}")
    return 0
