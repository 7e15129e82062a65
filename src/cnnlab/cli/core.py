"""train, evaluate, predict, models."""

from __future__ import annotations

import argparse
import json
import shlex
import sys

from cnnlab.cli.serve import add_backend_arguments, add_require_signed
from cnnlab.data.readers import FORMATS_HELP
from cnnlab.errors import CnnlabError


def register(sub: argparse._SubParsersAction) -> None:
    for add in (
        _add_train,
        _add_evaluate,
        _add_recalibrate,
        _add_ood_fit,
        _add_predict,
        _add_check,
        _add_seal,
        _add_sign,
        _add_models,
    ):
        add(sub)


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a recipe and write a model bundle")
    p.add_argument("recipe", help="a YAML recipe, e.g. recipes/mnist_fast.yaml")
    p.add_argument(
        "--data", help=f"dataset name or local path: {FORMATS_HELP} (overrides data.source)"
    )
    p.add_argument("--out", help="run folder for the bundle (default runs/<recipe>-<time>/)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe value, e.g. --set train.epochs=3 (repeatable)")  # fmt: skip
    p.add_argument("--resume", action="store_true", help="continue from --out/checkpoint.pt")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="evaluate a bundle on a split of a dataset")
    p.add_argument("bundle", help="bundle folder or shipped model name")
    p.add_argument("--data", required=True, help=f"dataset name or local path: {FORMATS_HELP}")
    p.add_argument("--split", default="test", choices=["test", "val", "train"])
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.add_argument("--out", help="folder for plots (confusion matrix, ...)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--record", action="store_true",
                   help="store the figures in the bundle (bundle.json and card) as an external "
                   "validation, under --name")  # fmt: skip
    p.add_argument(
        "--name", help="the data's name in the record (default: its last two path parts)"
    )
    p.set_defaults(func=cmd_evaluate)


def _add_recalibrate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "recalibrate",
        help="refit a binary bundle's temperature and threshold on a site's labelled images",
        description="Refit temperature and threshold on a site's labelled folder "
        "(root/<class>/* or its test/ split) and write a new bundle that records both rules and "
        "the data each came from. The figures printed come from cross-validation: each image is "
        "judged by a rule fitted on the other folds. The weights are not changed.",
    )  # fmt: skip
    p.add_argument("bundle", help="bundle folder or shipped model name")
    p.add_argument("--data", required=True, help="the site's labelled image folder")
    p.add_argument("--out", required=True, help="folder for the new bundle (must not exist)")
    p.add_argument(
        "--policy", default="target_sensitivity", choices=["target_sensitivity", "youden"]
    )
    p.add_argument("--target-sensitivity", type=float, default=0.95)
    p.add_argument("--folds", type=int, default=5, help="cross-validation folds (default 5)")
    p.add_argument(
        "--name", help="the site data's name in the record (default: its last two path parts)"
    )
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.set_defaults(func=cmd_recalibrate)


def _add_ood_fit(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ood-fit",
        help="add an out-of-distribution check to a bundle, fitted on its training data",
        description="Repeats the bundle's own training/validation split of DATA, fits the "
        "Mahalanobis check on the training part's features (an early stage's channel statistics "
        "and the head's input) and cuts it off at a percentile of the validation part's "
        "distances. Inputs beyond it are then reported as "
        "'does not look like the training images' by predict, the app and the API. `cnnlab "
        "train` does this itself; this is for bundles trained before, or a new cut-off.",
    )  # fmt: skip
    p.add_argument("bundle", help="bundle folder (or a shipped name, with --out)")
    p.add_argument("--data", required=True, help="the data the bundle was trained on")
    p.add_argument("--out", help="write a copy of the bundle with the check here (must not exist)")
    p.add_argument("--percentile", type=float, default=99.0,
                   help="cut-off: this percentile of the validation distances (default 99)")  # fmt: skip
    p.set_defaults(func=cmd_ood_fit)


def _add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="classify image files or folders")
    p.add_argument("bundle", help="bundle folder or shipped model name")
    p.add_argument("paths", nargs="+", help="image files or folders")
    p.add_argument("--recursive", action="store_true",
                   help="also classify the images in the folders' subfolders")  # fmt: skip
    p.add_argument("--top-k", type=int, default=3)
    add_backend_arguments(p)
    add_require_signed(p)
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="one JSON object on stdout")
    fmt.add_argument("--csv", action="store_true", help="CSV on stdout")
    p.set_defaults(func=cmd_predict)


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


def _add_models(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the registered models with parameter counts")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_models)


def cmd_train(args: argparse.Namespace) -> int:
    from cnnlab.config import load_recipe
    from cnnlab.train.distributed import is_main
    from cnnlab.train.run import train_recipe

    recipe = load_recipe(args.recipe, args.set)
    outcome = train_recipe(recipe, args.data, args.out, args.resume, progress=not args.no_progress)
    if not is_main():  # under torchrun, rank 0 reports
        return 0
    acc = outcome.metrics.get("accuracy")
    summary = f"validation accuracy {acc:.2%}, " if acc is not None else ""
    print(
        f"bundle written to {outcome.out_dir} ({summary}{outcome.result.train_seconds:.1f} s of training)"
    )
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from cnnlab.bundle.catalog import shipped_bundles
    from cnnlab.bundle.loading import load_bundle
    from cnnlab.evaluate.scores import evaluate_bundle

    bundle = load_bundle(args.bundle)
    if args.record and bundle.path in shipped_bundles().values():
        raise CnnlabError(f"{args.bundle} ships with cnnlab and is read-only: --record into a copy, "
                          "or write a site bundle with `cnnlab recalibrate`")  # fmt: skip
    report = evaluate_bundle(bundle, args.data, args.split, args.out, args.batch_size)
    if report.get("warning"):
        print(f"cnnlab: {report['warning']}", file=sys.stderr)
    if args.out:
        print(f"figures, and the most confident mistakes (mistakes.png), written to {args.out}",
              file=sys.stderr)  # fmt: skip
    if args.record:
        from cnnlab.evaluate.external import record_evaluation

        name = record_evaluation(bundle, report, args.data, args.name)
        print(f"recorded as external validation '{name}' in {bundle.path}", file=sys.stderr)
    if args.json:
        json.dump(finite_json(report), sys.stdout, allow_nan=False)
        sys.stdout.write("\n")
        return 0
    print(format_report(report))
    return 0


def cmd_recalibrate(args: argparse.Namespace) -> int:
    from cnnlab.config import DecisionConfig
    from cnnlab.evaluate.recalibrate import recalibrate

    if not 0 < args.target_sensitivity < 1:
        raise CnnlabError("--target-sensitivity must be between 0 and 1")
    if args.folds < 2:
        raise CnnlabError("--folds must be at least 2")
    cfg = DecisionConfig(policy=args.policy, target_sensitivity=args.target_sensitivity)
    command = shlex.join(["cnnlab", *sys.argv[1:]]) if sys.argv[1:2] == ["recalibrate"] else ""
    r = recalibrate(args.bundle, args.data, args.out, cfg, args.folds, args.name, command=command)
    if args.json:
        out = {"bundle": str(r.out), "decision": r.decision, "folds": r.folds,
               "before": r.before, "cross_validated": r.after}  # fmt: skip
        json.dump(finite_json(out), sys.stdout, allow_nan=False)
        sys.stdout.write("\n")
        return 0
    print(format_recalibration(r))
    return 0


def cmd_ood_fit(args: argparse.Namespace) -> int:
    from cnnlab.evaluate.ood_fit import add_ood

    out, record = add_ood(args.bundle, args.data, args.out, args.percentile)
    views = " and ".join(
        f"{p['layer']} ({p['take']}, {p['features']} wide)" for p in record["parts"]
    )
    print(f"out-of-distribution check written to {out}: Mahalanobis distance on {views}; cut-off "
          f"at the {record['percentile']:g}th percentile of {record['n_cutoff']} "
          f"{record['fitted_on']} images")  # fmt: skip
    return 0


def format_recalibration(r) -> str:
    d, b, a = r.decision, r.before, r.after
    lines = [
        f"site sample {d['data']}: {d['n']} images",
        f"new rule: {d['positive_class']} when p >= {d['threshold']:.4f} (temperature "
        f"{d['temperature']:.3f}; {d['policy_text']})",
        f"{'':<15}{'bundle rule (thr ' + format(b['threshold'], '.3f') + ')':<30}"
        f"refitted rule, {r.folds}-fold cross-validated",
    ]
    for key in ("auc", "sensitivity", "specificity", "ppv", "npv", "accuracy", "brier"):
        cells = [f"{m[key]:.4f} ({m[key + '_ci'][0]:.3f}-{m[key + '_ci'][1]:.3f})" for m in (b, a)]
        lines.append(f"  {key:<13}{cells[0]:<30}{cells[1]}")
    lines.append(f"  {'ece':<13}{b['ece']:<30.4f}{a['ece']:.4f}")
    lines.append(f"new bundle written to {r.out}")
    return "\n".join(lines)


def finite_json(obj):
    """`obj` as plain JSON values, NaN and infinity as null: an undefined figure (the AUC of a
    one-class split) must not make the whole output invalid JSON for strict parsers."""
    import math

    def clean(o):
        if isinstance(o, float):
            return o if math.isfinite(o) else None
        if isinstance(o, dict):
            return {k: clean(v) for k, v in o.items()}
        if isinstance(o, list):
            return [clean(v) for v in o]
        return o

    def plain(o):  # numpy/torch scalars and arrays
        return o.tolist() if hasattr(o, "tolist") else float(o)

    return clean(json.loads(json.dumps(obj, default=plain)))


def format_report(report: dict) -> str:
    lines = [
        f"{report['model']} on {report['data']} [{report['split']}]: {report['n']} images",
        f"accuracy {report['accuracy']:.2%}   loss {report['loss']:.4f}   macro F1 {report['macro_f1']:.4f}",
    ]
    if "auc" in report:
        from cnnlab.report.metrics import format_binary

        lines += format_binary(report)
    elif report.get("threshold") is not None:
        lines.append(f"decision threshold {report['threshold']:.3f}")
    width = max(len("class"), *(len(c) for c in report["per_class"])) + 2
    lines.append(f"{'class':<{width}}precision  recall    f1      support")
    for name, m in report["per_class"].items():
        lines.append(
            f"{name:<{width}}{m['precision']:<11.4f}{m['recall']:<10.4f}{m['f1']:<8.4f}{m['support']}"
        )
    lines.append("confusion matrix (rows = true, columns = predicted):")
    lines += ["  " + " ".join(f"{v:>6}" for v in row) for row in report["confusion_matrix"]]
    return "\n".join(lines)


def cmd_predict(args: argparse.Namespace) -> int:
    from cnnlab.bundle.loading import load_bundle
    from cnnlab.deploy.backends import use_backend
    from cnnlab.predict import expand_inputs, predict_sources
    from cnnlab.report.present import present
    from cnnlab.report.rows import rows_csv

    if args.top_k < 1:
        raise CnnlabError("--top-k must be at least 1")
    files = expand_inputs(args.paths, args.recursive)
    loaded = load_bundle(args.bundle, require_signed=args.require_signed)
    bundle = use_backend(loaded, args.backend, args.onnx)
    results = predict_sources(bundle, files, [str(f) for f in files], args.top_k)
    failed = [r for r in results if r.error]
    shown = [present(r, bundle) for r in results]  # the app's and the API's words too
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


def cmd_models(args: argparse.Namespace) -> int:
    from cnnlab.models import count_params, create_model, list_models

    rows = []
    for entry in list_models():
        import torch

        with torch.device("meta"):
            model = create_model(entry.name)
        rows.append({
            "name": entry.name, "family": entry.family, "params": count_params(model),
            "input": "x".join(map(str, entry.input_size)), "classes": entry.num_classes,
            "description": entry.description,
        })  # fmt: skip
    if args.json:
        json.dump(rows, sys.stdout, indent=1)
        sys.stdout.write("\n")
        return 0
    print(f"{'model':<20}{'family':<9}{'params':>13}  {'input':<10}{'outputs':>7}  description")
    for r in rows:
        print(
            f"{r['name']:<20}{r['family']:<9}{r['params']:>13,}  {r['input']:<10}{r['classes']:>7}  {r['description']}"
        )
    print(
        "\nAny timm or torchvision classifier also works by name (see `cnnlab models --help`).",
        file=sys.stderr,
    )
    return 0
