"""fingerprint: keep a bundle's training images' fingerprints in it, for bundles trained before
cnnlab kept them, so that `evaluate` and `recalibrate` can check their data against them."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from cnnlab.errors import CnnlabError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "fingerprint",
        help="keep in a bundle the fingerprints of the images it was trained on",
        description="Fingerprints (sha256, perceptual hashes; no pixels) of every image of the "
        "training folder but its test/ split, stored in the bundle's training_hashes.safetensors "
        "and sealed; `evaluate` then warns about, and `recalibrate` refuses, data holding those "
        "images. `cnnlab train` does this itself; this is for bundles trained before. The "
        "weights are not changed.",
    )  # fmt: skip
    p.add_argument("bundle", help="bundle folder (or a shipped name, with --out)")
    p.add_argument("--data", required=True, help="the image folder the bundle was trained on")
    p.add_argument("--out", help="write a copy of the bundle with them here (must not exist)")
    p.set_defaults(func=cmd_fingerprint)


def cmd_fingerprint(args: argparse.Namespace) -> int:
    from cnnlab.bundle.catalog import resolve_bundle, shipped_bundles
    from cnnlab.bundle.loading import copy_bundle, load_bundle
    from cnnlab.bundle.save import add_training_hashes

    src = resolve_bundle(args.bundle)
    if args.out is None and src in shipped_bundles().values():
        raise CnnlabError(f"{args.bundle} ships with cnnlab and is read-only: write them into a "
                          "copy with --out DIR")  # fmt: skip
    if args.out is not None and Path(args.out).exists():
        raise CnnlabError(f"--out {args.out} exists; name a new folder")
    target, renamed = src, {}
    if args.out is None:
        load_bundle(src)  # a bundle that would not load gets nothing added (a copy loads it)
    else:
        target = copy_bundle(src, Path(args.out))
        renamed = {"name": target.name}  # written with the fingerprints: one write, one seal
    try:
        record = add_training_hashes(target, args.data, **renamed)
    except CnnlabError:
        if args.out is not None:
            shutil.rmtree(target, ignore_errors=True)
        raise
    print(f"fingerprints of {record['n']:,} training images ({record['source']}) kept in "
          f"{target}; the weights are unchanged")  # fmt: skip
    return 0
