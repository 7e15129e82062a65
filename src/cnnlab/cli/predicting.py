"""predict, explain: a bundle put to use on images (labels; filters, maps and Grad-CAM)."""

from __future__ import annotations

import argparse
import json
import sys
import time

from cnnlab.cli.common import (
    add_backend_arguments,
    add_no_record,
    add_require_signed,
    finite_json,
)
from cnnlab.errors import CnnlabError


def register(sub: argparse._SubParsersAction) -> None:
    _add_predict(sub)
    _add_explain(sub)


def _add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="classify image files or folders")
    p.add_argument("bundle", help="bundle folder or shipped model name")
    p.add_argument("paths", nargs="+", help="image files or folders")
    p.add_argument("--recursive", action="store_true",
                   help="also classify the images in the folders' subfolders")  # fmt: skip
    p.add_argument("--top-k", type=int, default=3)
    p.add_argument("--with-patient-id", action="store_true",
                   help="DICOM inputs: add their PatientID to each row (left out otherwise)")  # fmt: skip
    add_backend_arguments(p)
    add_require_signed(p)
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="one JSON object on stdout")
    fmt.add_argument("--csv", action="store_true", help="CSV on stdout")
    add_no_record(p)
    p.set_defaults(func=cmd_predict)


def cmd_predict(args: argparse.Namespace) -> int:
    from cnnlab.deploy.backends import load_with_backend
    from cnnlab.predict import expand_inputs, predict_sources
    from cnnlab.records.entries import put_on_record
    from cnnlab.report.present import present
    from cnnlab.report.rows import rows_csv

    if args.top_k < 1:
        raise CnnlabError("--top-k must be at least 1")
    files = expand_inputs(args.paths, args.recursive)
    bundle = load_with_backend(args.bundle, args.backend, args.onnx, args.require_signed)
    start = time.perf_counter()
    results = predict_sources(bundle, files, [str(f) for f in files], args.top_k)
    failed = [r for r in results if r.error]
    shown = [present(r, bundle, args.with_patient_id) for r in results]  # the app's, the API's
    if not args.no_record:  # on record before it is shown
        put_on_record(shown, bundle, "cli", None, (time.perf_counter() - start) * 1e3, files)
    if args.json:
        rows = [s.row for s in shown]
        json.dump(finite_json({"model": bundle.name, "predictions": rows}), sys.stdout,
                  allow_nan=False)  # fmt: skip
        sys.stdout.write("\n")
    elif args.csv:
        sys.stdout.write(rows_csv([s.row for s in shown]))
    else:
        for s in shown:
            if s.text is not None:
                print(s.text)
    for r in failed:
        print(f"cnnlab: error: {r.source}: {r.error}", file=sys.stderr)
    return 2 if failed else 0


def _add_explain(sub: argparse._SubParsersAction) -> None:
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
    from cnnlab.cli.common import check_model_name

    check_model_name(args.model)  # a typo answered before torch loads
    from cnnlab.anatomy.target import load_target, parse_input
    from cnnlab.bundle.catalog import looks_like_bundle
    from cnnlab.explain.gallery import explain_to_files

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
