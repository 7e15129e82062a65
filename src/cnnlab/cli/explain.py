"""explain: filter grids, feature maps and Grad-CAM overlays as PNG files."""

from __future__ import annotations

import argparse
import sys

from cnnlab.errors import CnnlabError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "explain",
        help="filters, feature maps and Grad-CAM of a bundle or model, as PNGs",
        description="Layer names are the ones `cnnlab summary` prints (a unique ending such as "
        "conv1 also works). Images are read with the bundle's own preprocessing.",
    )
    p.add_argument("model", help="a bundle folder or shipped name, or a model name")
    p.add_argument("image", nargs="?", help="an image file (needed for feature maps and Grad-CAM)")
    p.add_argument("--filters", metavar="LAYER", help="grid of this conv layer's filters")
    p.add_argument("--feature-maps", metavar="LAYER|all", help="feature maps of a layer, or all")
    p.add_argument("--gradcam", action="store_true", help="Grad-CAM overlay (gradcam.png)")
    p.add_argument("--layer", help="Grad-CAM target layer (default: last conv of forward_features)")
    p.add_argument("--class", dest="cls", metavar="LABEL",
                   help="Grad-CAM class by name or index (default: the predicted class)")  # fmt: skip
    p.add_argument("--max-maps", type=int, default=64, help="feature maps shown per layer")
    p.add_argument("--receptive-field", metavar="LAYER",
                   help="a unit's receptive field on the image: the theoretical box (from the "
                   "summary) beside the effective field (input gradient)")  # fmt: skip
    p.add_argument("--unit", metavar="Y,X", help="the unit of --receptive-field (default: centre)")
    p.add_argument("--input", help="model names only: input C x H x W (default: native)")
    p.add_argument("--pretrained", action="store_true",
                   help="model names only: load the library's pretrained weights if offline")  # fmt: skip
    p.add_argument("--out", required=True, help="folder for the PNGs")
    p.set_defaults(func=cmd_explain)


def cmd_explain(args: argparse.Namespace) -> int:
    from cnnlab.explain.gallery import explain_to_files
    from cnnlab.inspect.target import load_target, looks_like_bundle, parse_input

    if args.max_maps < 1:
        raise CnnlabError(f"--max-maps must be at least 1, got {args.max_maps}")
    if (args.layer or args.cls) and not args.gradcam:
        raise CnnlabError("--layer and --class go with --gradcam")
    if args.input and looks_like_bundle(args.model):
        raise CnnlabError("--input is for model names; a bundle reads images at its own size")
    if args.unit and not args.receptive_field:
        raise CnnlabError("--unit goes with --receptive-field")
    if args.receptive_field and args.image is None:
        raise CnnlabError("--receptive-field needs an IMAGE")
    unit = _unit(args.unit) if args.unit else None
    shape = parse_input(args.input) if args.input else None
    target = load_target(args.model, shape, pretrained=args.pretrained)
    written = []
    if args.filters or args.feature_maps or args.gradcam or not args.receptive_field:
        written = explain_to_files(
            target, args.image, args.out, args.filters, args.feature_maps, args.gradcam,
            args.layer, args.cls, args.max_maps,
        )  # fmt: skip
    if args.receptive_field:
        from cnnlab.learn.fields import receptive_field_to_file

        path, field = receptive_field_to_file(
            target, args.image, args.receptive_field, unit, args.out
        )
        written.append(path)
        y, x = field.unit
        print(f"{field.layer} unit ({y}, {x}): {field.comparison()}", file=sys.stderr)
    for path in written:
        print(path)
    return 0


def _unit(text: str) -> tuple[int, int]:
    try:
        y, x = (int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        raise CnnlabError(f"--unit must be Y,X (row, column), got {text!r}") from None
    return y, x
