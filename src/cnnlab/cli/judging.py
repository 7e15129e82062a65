"""evaluate, recalibrate, ood-fit: judge a bundle on data, refit its decision rule for a
site, fit its out-of-distribution check."""

from __future__ import annotations

import argparse
import json
import shlex
import sys

from cnnlab.cli.common import add_by, add_prevalence, finite_json
from cnnlab.data.readers import FORMATS_HELP
from cnnlab.errors import CnnlabError


def register(sub: argparse._SubParsersAction) -> None:
    _add_evaluate(sub)
    _add_recalibrate(sub)
    _add_ood_fit(sub)


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
    add_prevalence(p)
    add_by(p)
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
    p.add_argument("--policy", choices=["target_sensitivity", "target_ppv", "youden"],
                   help="default target_sensitivity; target_ppv with --target-ppv")  # fmt: skip
    p.add_argument("--target-sensitivity", type=float, default=0.95)
    p.add_argument("--target-ppv", type=float, metavar="X",
                   help="the most sensitive rule whose PPV at --prevalence reaches X")  # fmt: skip
    add_prevalence(p)
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


def cmd_evaluate(args: argparse.Namespace) -> int:
    from cnnlab.bundle.catalog import shipped_bundles
    from cnnlab.bundle.loading import load_bundle
    from cnnlab.evaluate.medical import check_prevalence
    from cnnlab.evaluate.scores import evaluate_bundle

    bundle = load_bundle(args.bundle)
    if args.record and bundle.path in shipped_bundles().values():
        raise CnnlabError(f"{args.bundle} ships with cnnlab and is read-only: --record into a copy, "
                          "or write a site bundle with `cnnlab recalibrate`")  # fmt: skip
    if args.meta and not args.by:
        raise CnnlabError("--meta gives the groups of --by FIELD: add --by")
    report = evaluate_bundle(bundle, args.data, args.split, args.out, args.batch_size,
                             check_prevalence(args.prevalence), args.by, args.meta)  # fmt: skip
    if report.get("warning"):
        print(f"cnnlab: {report['warning']}", file=sys.stderr)
    for line in (report.get("leakage") or {}).get("warnings", []):
        print(f"cnnlab: warning: {line}", file=sys.stderr)
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
    from cnnlab.evaluate.medical import check_prevalence
    from cnnlab.evaluate.recalibrate import recalibrate

    if not 0 < args.target_sensitivity < 1:
        raise CnnlabError("--target-sensitivity must be between 0 and 1")
    if args.folds < 2:
        raise CnnlabError("--folds must be at least 2")
    prevalence = check_prevalence(args.prevalence)
    policy = args.policy or ("target_ppv" if args.target_ppv is not None else "target_sensitivity")
    if policy == "target_ppv":
        if args.target_ppv is None or not 0 < args.target_ppv < 1:
            raise CnnlabError("--policy target_ppv needs --target-ppv between 0 and 1")
        if prevalence is None:
            raise CnnlabError("--target-ppv needs --prevalence: a PPV holds at one prevalence")
    elif args.target_ppv is not None:
        raise CnnlabError(f"--target-ppv is for --policy target_ppv, not {policy}")
    cfg = DecisionConfig(policy=policy, target_sensitivity=args.target_sensitivity,
                         target_ppv=args.target_ppv or 0.5, prevalence=prevalence)  # fmt: skip
    command = shlex.join(["cnnlab", *sys.argv[1:]]) if sys.argv[1:2] == ["recalibrate"] else ""
    r = recalibrate(args.bundle, args.data, args.out, cfg, args.folds, args.name, command=command)
    if args.json:
        if r.after.get("missed_target"):
            print(f"cnnlab: warning: {missed_text(r.after['missed_target'])}", file=sys.stderr)
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
    keys = ["auc", "sensitivity", "specificity", "ppv", "npv", "accuracy", "brier"]
    if a.get("prevalence") is not None:
        keys += ["ppv_at_prevalence", "npv_at_prevalence"]
    for key in keys:
        cells = [f"{m[key]:.4f} ({m[key + '_ci'][0]:.3f}-{m[key + '_ci'][1]:.3f})" for m in (b, a)]
        shown = key.replace("_at_prevalence", f" at {a.get('prevalence') or 0:g}")
        lines.append(f"  {shown:<13}{cells[0]:<30}{cells[1]}")
    lines.append(f"  {'ece':<13}{b['ece']:<30.4f}{a['ece']:.4f}")
    if a.get("missed_target"):
        lines.append(missed_text(a["missed_target"]))
    lines.append(f"new bundle written to {r.out}")
    return "\n".join(lines)


def missed_text(m: dict) -> str:
    """The cross-validated figure's shortfall and the price of reaching the target, in words."""
    name = m["metric"].replace("_at_prevalence", " (at the prevalence)")
    text = (f"the cross-validated {name} {m['cross_validated']:.4f} (95% CI {m['ci'][0]:.3f}-"
            f"{m['ci'][1]:.3f}) misses the target {m['target']:g} by {m['short_by']:.4f}")  # fmt: skip
    if "threshold" not in m:
        return text + "; no threshold reaches it on these images"
    return (text + f"; on the held-out probabilities, reaching it takes p >= {m['threshold']:.4f}, "
            f"where {m['cost_metric']} is {m['cost_to']:.4f} instead of {m['cost_from']:.4f} "
            f"({m['cost_to'] - m['cost_from']:+.4f})")  # fmt: skip


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
    if report.get("subgroups"):
        from cnnlab.evaluate.subgroups import format_subgroups

        lines += format_subgroups(report["subgroups"]["field"], report["subgroups"]["groups"])
    return "\n".join(lines)
