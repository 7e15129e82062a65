"""code: a complete training script to copy, PyTorch or Keras, for a model, recipe or bundle."""

from __future__ import annotations

import argparse
import sys

from cnnlab.errors import CnnlabError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "code",
        help="print a complete, runnable PyTorch or Keras script for a model, recipe or bundle",
        description="The model as a plain nn.Module (or a keras.Sequential), the recipe's data "
        "loading, augmentation, optimiser and training loop, in one file that needs only its "
        "framework, numpy and Pillow. MODEL is a model name (cnnlab models), a recipe "
        "(recipes/mnist_keras_cnn.yaml: its data and training settings) or a bundle.",
    )
    p.add_argument("model", metavar="MODEL|RECIPE|BUNDLE")
    p.add_argument("--framework", choices=["pytorch", "keras", "streamlit"], default="pytorch",
                   help="streamlit: app.py for a bundle (or the bundle a recipe trains): upload, "
                   "predict, the probability and the threshold")  # fmt: skip
    p.add_argument("--out", help="write the script to this file instead of stdout")
    p.set_defaults(func=cmd_code)


def cmd_code(args: argparse.Namespace) -> int:
    from cnnlab.cli.common import check_model_name

    check_model_name(args.model)
    from cnnlab.fileio import atomic_write_text
    from cnnlab.learn.codegen import generate_code

    text = generate_code(args.model, args.framework)
    if args.out:
        if not args.out.endswith(".py"):
            raise CnnlabError(f"--out must be a .py file, got {args.out}")
        atomic_write_text(args.out, text)
        print(f"script written to {args.out}", file=sys.stderr)
        return 0
    sys.stdout.write(text)
    return 0
