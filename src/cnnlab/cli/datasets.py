"""audit, augment-preview: look at a dataset before training on it."""

from __future__ import annotations

import argparse
import json
import sys


def register(sub: argparse._SubParsersAction) -> None:
    from cnnlab.data.readers import IMAGE_FOLDER, readers

    folder = next(r for r in readers() if r.name == IMAGE_FOLDER)
    p = sub.add_parser(
        "audit",
        help="check an image folder: counts, sizes, unreadable files, duplicates and leakage",
    )
    p.add_argument("data", help=folder.describe)
    p.add_argument("--against", metavar="TRAIN",
                   help="a training folder (or archive): name every image of DATA found there too, "
                   "exactly or nearly (resized, re-encoded)")  # fmt: skip
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.add_argument("--workers", type=int, default=0, help="processes (0 = every core)")
    p.set_defaults(func=cmd_audit)

    p = sub.add_parser(
        "augment-preview", help="a PNG grid of training images beside augmented copies"
    )
    p.add_argument("data", help="dataset name or local path")
    p.add_argument("--recipe", required=True, help="recipe whose data and augment sections to use")
    p.add_argument("--out", required=True, help="PNG file to write")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe value (repeatable)")  # fmt: skip
    p.add_argument("--images", type=int, default=6, help="rows (default 6)")
    p.add_argument("--copies", type=int, default=5, help="augmented copies per image (default 5)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_augment_preview)


def cmd_audit(args: argparse.Namespace) -> int:
    from cnnlab.data.audit import audit_folder, format_report

    report = audit_folder(args.data, args.workers or None, args.against)
    if args.json:
        json.dump(report, sys.stdout)
        sys.stdout.write("\n")
    else:
        print(format_report(report))
    return 0


def cmd_augment_preview(args: argparse.Namespace) -> int:
    from cnnlab.config import load_recipe
    from cnnlab.data.augment import describe
    from cnnlab.data.preview import write_preview
    from cnnlab.errors import CnnlabError

    if not 1 <= args.images <= 64 or not 1 <= args.copies <= 32:
        raise CnnlabError("--images must be 1-64 and --copies 1-32")
    if not args.out.lower().endswith(".png"):
        raise CnnlabError(f"--out must name a .png file, got {args.out}")
    recipe = load_recipe(args.recipe, args.set)
    out = write_preview(args.data, recipe, args.out, args.images, args.copies, args.seed)
    print(f"wrote {out}: originals (left) and {args.copies} augmented copies each "
          f"({describe(recipe.augment)})")  # fmt: skip
    return 0
