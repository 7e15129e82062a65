"""train, runs, cache: train a recipe, then compare and tidy what training leaves behind."""

from __future__ import annotations

import argparse
import json
import sys

from cnnlab.data.cache import DEFAULT_MAX_GB, KINDS, MAX_GB_ENV  # no torch: the parser reads them
from cnnlab.data.readers import FORMATS_HELP
from cnnlab.errors import CnnlabError


def register(sub: argparse._SubParsersAction) -> None:
    _add_train(sub)
    _add_runs(sub)


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a recipe and write a model bundle")
    p.add_argument(
        "recipe", help="a YAML recipe, e.g. recipes/mnist_fast.yaml, or its name (mnist_fast)"
    )
    p.add_argument(
        "--data", help=f"dataset name or local path: {FORMATS_HELP} (overrides data.source)"
    )
    p.add_argument("--out", help="run folder for the bundle (default runs/<recipe>-<time>/)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe value, e.g. --set train.epochs=3 (repeatable)")  # fmt: skip
    p.add_argument("--resume", action="store_true", help="continue from --out/checkpoint.pt")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    from cnnlab.cli.common import recipe_file
    from cnnlab.config import load_recipe
    from cnnlab.train.distributed import is_main
    from cnnlab.train.run import RunFinished, train_recipe

    recipe = load_recipe(recipe_file(args.recipe), args.set)
    try:
        outcome = train_recipe(recipe, args.data, args.out, args.resume,
                               progress=not args.no_progress)  # fmt: skip
    except RunFinished as done:  # said, and not an error: the run is there to use
        print(f"cnnlab: {done}", file=sys.stderr)
        return 0
    if not is_main():  # under torchrun, rank 0 reports
        return 0
    acc = outcome.metrics.get("accuracy")
    summary = f"validation accuracy {acc:.2%}, " if acc is not None else ""
    print(
        f"bundle written to {outcome.out_dir} ({summary}{outcome.result.train_seconds:.1f} s of training)"
    )
    return 0


def _add_runs(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "runs",
        help="compare training runs: a table, and their curves overlaid (--plot)",
        description="Each run folder (a bundle written by `cnnlab train`) in one row: recipe, "
        "model, parameters, epochs, training time, compute (CPU capability, precision, threads), "
        "best validation accuracy and any recorded evaluation. Folders are searched two levels "
        "deep. For every scalar of every step: `tensorboard --logdir runs`.",
    )
    p.add_argument("dirs", nargs="*", default=["runs"], metavar="DIR",
                   help="run folders, or folders holding them (default: runs)")  # fmt: skip
    p.add_argument("--plot", metavar="FILE.png", help="also draw the runs' curves overlaid")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser(
        "cache",
        help="list or clear cnnlab's caches (decoded images, features, archives, ONNX exports...)",
        description="Decoded image folders and backbone features are kept under "
        f"${MAX_GB_ENV} (default {DEFAULT_MAX_GB:g}), least recently used removed first. Downloaded "
        "datasets are not a cache and stay.",
    )
    p.add_argument("action", nargs="?", choices=["list", "clear"], default="list")
    p.add_argument("--kind", action="append", choices=KINDS,
                   help="only this kind (repeatable; default: all)")  # fmt: skip
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.set_defaults(func=cmd_cache)


def cmd_runs(args: argparse.Namespace) -> int:
    from cnnlab.report.runs import find_runs, format_runs

    if args.plot and not args.plot.lower().endswith(".png"):
        raise CnnlabError(f"--plot must name a .png file, got {args.plot}")
    runs = find_runs(args.dirs)
    if args.plot:
        if not runs:
            raise CnnlabError(f"no runs in {', '.join(args.dirs)} to plot")
        from cnnlab.report.figures import runs_figure, save_figure

        save_figure(runs_figure([r.curves() for r in runs]), args.plot, dpi=110)
        print(f"curves of {len(runs)} run{'s' if len(runs) > 1 else ''} written to {args.plot}",
              file=sys.stderr)  # fmt: skip
    if args.json:
        json.dump({"runs": [r.row() for r in runs]}, sys.stdout)
        sys.stdout.write("\n")
        return 0
    print(format_runs(runs))
    return 0


def cmd_cache(args: argparse.Namespace) -> int:
    from cnnlab.data.cache import KINDS, cache_entries, clear_cache, max_bytes
    from cnnlab.data.download import cache_dir

    kinds = tuple(args.kind or KINDS)
    if args.action == "clear":
        n, freed = clear_cache(kinds)
        if args.json:
            json.dump({"removed": n, "bytes": freed}, sys.stdout)
            sys.stdout.write("\n")
        else:
            print(
                f"removed {n} entr{'y' if n == 1 else 'ies'} ({freed / 1e9:.2f} GB) from {cache_dir()}"
            )
        return 0
    entries = cache_entries(kinds)
    total = sum(e.bytes for e in entries)
    if args.json:
        json.dump({"root": str(cache_dir()), "bytes": total, "max_bytes": max_bytes(),
                   "entries": [e.to_dict() for e in entries]}, sys.stdout)  # fmt: skip
        sys.stdout.write("\n")
        return 0
    print(f"{'kind':<10}{'size':>10}  {'last used':<17} what")
    for e in entries:
        print(f"{e.kind:<10}{e.bytes / 1e6:>8.1f} MB  {e.to_dict()['last_used']:<17} {e.what}")
    print(f"{len(entries)} entries, {total / 1e9:.2f} GB in {cache_dir()} (decoded and features "
          f"kept under {max_bytes() / 1e9:g} GB: {MAX_GB_ENV}); `cnnlab cache clear` "
          "empties it")  # fmt: skip
    return 0
