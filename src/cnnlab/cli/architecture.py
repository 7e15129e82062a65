"""conv, summary, zoo, models: look at a network before training it (conv arithmetic on
paper, a Keras-style summary, the classic CNNs compared, the registry)."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys

from cnnlab.cli.common import check_model_name
from cnnlab.errors import CnnlabError
from cnnlab.fileio import atomic_write_text


def register(sub: argparse._SubParsersAction) -> None:
    _add_inspect(sub)
    _add_models(sub)


def _add_inspect(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "conv",
        aliases=["rf"],  # what a student looks for: the receptive field of a stack
        help="conv/pool arithmetic: output size, unused input, receptive field, parameters "
        "(also `cnnlab rf`)",
        description="One layer (--kernel/--stride/--padding...) or a stack (--layers "
        '"c3:32,c3:32,p2,c3:64s2psame"): c3 conv 3x3, p2 max pool, a2 avg pool; then sN '
        "stride, dN dilation, pN|psame|pvalid padding, :N filters, gN groups, dw, ceil.",
    )
    p.add_argument("--size", required=True, help="input size: 32 or HxW like 32x48")
    p.add_argument("--kernel", default="3", help="kernel size: 3 or 3x5 (default 3)")
    p.add_argument("--stride", default=None, help="stride (default 1; a pool's kernel size)")
    p.add_argument("--padding", default="valid", help="valid, same, N or HxW (default valid)")
    p.add_argument("--dilation", default="1", help="dilation (default 1)")
    p.add_argument("--pool", choices=["max", "avg"], help="a pooling layer instead of a conv")
    p.add_argument("--ceil-mode", action="store_true", help="round the output size up (pools)")
    p.add_argument("--in-channels", type=int, help="input channels (for the parameter count)")
    p.add_argument("--filters", type=int, help="number of filters (for the parameter count)")
    p.add_argument("--groups", default="1", help="conv groups, or dw for depthwise")
    p.add_argument("--no-bias", action="store_true", help="a conv without bias")
    p.add_argument("--layers", help='a stack instead of one layer, e.g. "c3,c3,p2,c3s2"')
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.add_argument("--draw", metavar="FILE.png|FILE.gif",
                   help="draw the layer (conv_arithmetic style): a PNG at --position, or a GIF "
                   "of the window sliding")  # fmt: skip
    p.add_argument("--position", type=int, default=0, help="output position drawn (from 0)")
    p.set_defaults(func=cmd_conv)

    p = sub.add_parser("summary", help="per-layer shapes, params, mult-adds, receptive fields")
    p.add_argument("model", help="a model name (cnnlab models, or a timm name) or a bundle")
    p.add_argument("--input", help="input C x H x W, e.g. 1x28x28 (default: the model's own)")
    p.add_argument("--classes", type=int, help="number of outputs (model names only)")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.set_defaults(func=cmd_summary)

    p = sub.add_parser("zoo", help="compare classic CNNs (table, Markdown, bar chart)")
    p.add_argument("--compare", default="lenet5,alexnet,vgg16", help="comma-separated model names")
    p.add_argument("--markdown", action="store_true", help="a Markdown table")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.add_argument("--out", help="also write a bar chart of params and mult-adds (PNG)")
    p.add_argument("--diagram", metavar="MODEL",
                   help="instead: a block diagram of MODEL (a name or bundle) to --out")  # fmt: skip
    p.set_defaults(func=cmd_zoo)


def cmd_conv(args: argparse.Namespace) -> int:
    from cnnlab.anatomy.stack import (
        describe_layer,
        evaluate_stack,
        format_stack,
        parse_pair,
        parse_stack,
        spec_from_args,
    )

    size = parse_pair(args.size, "--size")
    if args.in_channels is not None and args.in_channels < 1:
        raise CnnlabError(f"--in-channels must be at least 1, got {args.in_channels}")
    if args.layers:
        pad = args.padding.lower()
        if pad not in ("valid", "same"):
            pad = parse_pair(pad, "--padding", minimum=0)[0]
        rows = evaluate_stack(size, parse_stack(args.layers, pad), args.in_channels)
        if args.draw:
            raise CnnlabError("--draw draws one layer; leave out --layers")
        if args.json:
            return _json({"input": list(size), "layers": rows})
        print(format_stack(size, rows))
        return 0
    if (args.filters is None) != (args.in_channels is None):
        raise CnnlabError("the parameter count needs both --in-channels and --filters")
    spec = spec_from_args(args.kernel, args.stride, args.padding, args.dilation, args.pool,
                          args.ceil_mode, args.filters, args.groups, not args.no_bias)  # fmt: skip
    if args.pool and args.filters:
        raise CnnlabError("a pooling layer has no filters or parameters")
    row, text = describe_layer(size, spec, args.in_channels)
    if args.draw:
        from cnnlab.learn.conv_drawing import save_conv_drawing
        from cnnlab.learn.convolution import ConvSetting

        pads = row["padding"]
        setting = ConvSetting(size, spec.kernel, spec.stride, (tuple(pads[0]), tuple(pads[1])),
                              spec.dilation, str(spec.padding))  # fmt: skip
        setting.unit(args.position)  # a position outside the output is a clear error
        save_conv_drawing(setting, args.draw, args.position)
        print(f"drawing written to {args.draw}", file=sys.stderr)
    if args.json:
        return _json({"input": list(size), **row})
    print(text)
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    check_model_name(args.model)
    cached = _summary_cache(args)
    if cached is not None and cached.is_file():
        try:
            found = json.loads(cached.read_text())
            return _json(found["json"]) if args.json else print(found["text"]) or 0
        except (OSError, ValueError, KeyError, TypeError):
            pass  # a damaged cache file: computed again below, and replaced
    from cnnlab.anatomy.summary import format_summary, target_summary
    from cnnlab.anatomy.target import parse_input

    shape = parse_input(args.input) if args.input else None  # HxW: the model's own channels
    _, summary = target_summary(args.model, shape, args.classes)
    text, data = format_summary(summary), summary.to_dict()
    if cached is not None:
        with contextlib.suppress(OSError):
            atomic_write_text(cached, json.dumps({"json": data, "text": text}))
    if args.json:
        return _json(data)
    print(text)
    return 0


def _summary_cache(args: argparse.Namespace):
    """Where the summary of a model or recipe name is kept (a bundle's is not: it may change).
    Importing torch alone takes longer than a student should wait for a table."""
    from pathlib import Path

    from cnnlab.bundle.catalog import looks_like_bundle
    from cnnlab.names import derived_path, resolve_model

    if looks_like_bundle(args.model):
        return None
    named = resolve_model(args.model)
    recipe = named.recipe.read_bytes() if named.recipe is not None else b""
    anatomy = Path(__file__).resolve().parents[1] / "anatomy"
    return derived_path("summary", args.model, named.model, recipe, str(args.input),
                        str(args.classes), sources=(anatomy,))  # fmt: skip


def cmd_zoo(args: argparse.Namespace) -> int:
    if args.diagram:
        return _diagram(args)
    names = [n.strip() for n in args.compare.split(",") if n.strip()]
    if not names:
        raise CnnlabError("--compare needs model names, e.g. lenet5,alexnet,vgg16")
    for name in names:
        check_model_name(name)
    from cnnlab.anatomy.compare import compare_models, format_comparison, plot_comparison

    if args.out and not args.out.lower().endswith(".png"):
        raise CnnlabError(f"--out must be a .png file, got {args.out}")
    rows = compare_models(names)
    if args.out:
        from cnnlab.report.figures import save_figure

        save_figure(plot_comparison(rows), args.out, dpi=110)
        print(f"chart written to {args.out}", file=sys.stderr)
    if args.json:
        return _json({"models": [r.to_dict() for r in rows]})
    print(format_comparison(rows, markdown=args.markdown))
    return 0


def _diagram(args: argparse.Namespace) -> int:
    from cnnlab.anatomy.summary import target_summary
    from cnnlab.learn.diagram import save_diagram

    if not args.out or not args.out.lower().endswith(".png"):
        raise CnnlabError("--diagram needs --out FILE.png")
    check_model_name(args.diagram)
    target, summary = target_summary(args.diagram)
    save_diagram(target.model, summary, args.out)
    print(f"diagram written to {args.out}", file=sys.stderr)
    return 0


def _json(obj: dict) -> int:
    json.dump(obj, sys.stdout)
    sys.stdout.write("\n")
    return 0


def _add_models(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the registered models with parameter counts")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_models)


def cmd_models(args: argparse.Namespace) -> int:
    from cnnlab.names import model_table  # the index: no torch, so the table prints at once

    rows = model_table()
    if args.json:
        json.dump(rows, sys.stdout, indent=1)
        sys.stdout.write("\n")
        return 0
    print(f"{'model':<20}{'family':<9}{'params':>13}  {'input':<10}{'outputs':>7}  description")
    for r in rows:
        params = f"{r['params']:,}" if r["params"] is not None else "?"
        print(
            f"{r['name']:<20}{r['family']:<9}{params:>13}  {r['input']:<10}{r['classes']:>7}  {r['description']}"
        )
    print(
        "\nAny timm or torchvision classifier also works by name (see `cnnlab models --help`); "
        "so does a recipe's name (mnist_keras_cnn means its model, keras_mnist_cnn).",
        file=sys.stderr,
    )
    return 0
