"""compare: two binary bundles on the same labelled images, as a hospital chooses between them."""

from __future__ import annotations

import argparse
import json
import sys

from cnnlab.cli.common import add_by, add_prevalence, finite_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare",
        help="compare two binary bundles on the same labelled images (DeLong, McNemar, kappa)",
        description="Both bundles judge every image of a labelled folder (root/<class>/* or its "
        "test/ split), each at its own decision rule. Printed: each model's AUC, sensitivity, "
        "specificity, PPV and NPV with stratified bootstrap 95% intervals; the AUC difference "
        "with DeLong's test for correlated ROC curves; McNemar's exact test for sensitivity "
        "and for specificity; Cohen's kappa of the two models' decisions.",
    )  # fmt: skip
    p.add_argument("bundle_a", help="bundle folder or shipped model name (A)")
    p.add_argument("bundle_b", help="bundle folder or shipped model name (B)")
    p.add_argument("--data", required=True, help="labelled image folder")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.add_argument("--out", help="folder for disagreements.png and .json (the images where the "
                   "two models decide differently)")  # fmt: skip
    add_prevalence(p)
    add_by(p)
    p.add_argument("--bootstrap", type=int, default=1000, metavar="N",
                   help="bootstrap resamples for the intervals (default 1000)")  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="the bootstrap's seed (default 0)")
    p.add_argument("--batch-size", type=int, default=64)
    p.set_defaults(func=cmd_compare)


def cmd_compare(args: argparse.Namespace) -> int:
    from cnnlab.bundle.loading import load_bundle
    from cnnlab.errors import CnnlabError
    from cnnlab.evaluate.comparison import compare_bundles
    from cnnlab.evaluate.medical import check_prevalence

    if not 100 <= args.bootstrap <= 100_000:
        raise CnnlabError(
            f"--bootstrap must be from 100 to 100,000 resamples, got {args.bootstrap}"
        )
    a, b = load_bundle(args.bundle_a), load_bundle(args.bundle_b)
    if args.meta and not args.by:
        raise CnnlabError("--meta gives the groups of --by FIELD: add --by")
    report = compare_bundles(a, b, args.data, check_prevalence(args.prevalence), args.bootstrap,
                             args.seed, args.batch_size, args.out, args.by, args.meta)  # fmt: skip
    for m in report["models"]:
        if m.get("warning"):
            print(f"cnnlab: warning: {m['warning']}", file=sys.stderr)
    if args.out:
        print(f"the images decided differently written to {args.out}/disagreements.png (and "
              ".json)", file=sys.stderr)  # fmt: skip
    if args.json:
        json.dump(finite_json(report), sys.stdout, allow_nan=False)
        sys.stdout.write("\n")
        return 0
    print(format_comparison(report))
    return 0


def _cell(m: dict, key: str) -> str:
    lo, hi = m[f"{key}_ci"]
    return f"{m[key]:.4f} ({lo:.3f}-{hi:.3f})"


def _p(p: float) -> str:
    return "p < 0.0001" if p < 1e-4 else f"p = {p:.4f}"


def format_comparison(r: dict) -> str:
    a, b = r["models"]
    counts = ", ".join(f"{c} {n}" for c, n in r["counts"].items())
    head_a = f"A: {a['name']} (thr {a['threshold']:.3f})"
    head_b = f"B: {b['name']} (thr {b['threshold']:.3f})"
    lines = [f"{a['name']} vs {b['name']} on {r['data']}: {r['n']} images ({counts})",
             f"{'':<15}{head_a:<32}{head_b}"]  # fmt: skip
    keys = ["auc", "sensitivity", "specificity", "ppv", "npv"]
    if r.get("prevalence") is not None:
        keys += ["ppv_at_prevalence", "npv_at_prevalence"]
    for key in keys:
        shown = key.replace("_at_prevalence", f" at {r.get('prevalence', 0):g}")
        lines.append(f"  {shown:<13}{_cell(a, key):<32}{_cell(b, key)}")
    boot = r["bootstrap"]
    lines.append(f"  (95% intervals: {boot['resamples']} stratified bootstrap resamples, seed "
                 f"{boot['seed']}{'; PPV/NPV at the prevalence by Bayes on each' if r.get('prevalence') is not None else ''})")  # fmt: skip
    d = r["auc_difference"]
    lines.append(f"AUC difference A - B: {d['difference']:+.4f} (95% CI {d['ci'][0]:+.4f} to "
                 f"{d['ci'][1]:+.4f}), DeLong z = {d['z']:.3f}, {_p(d['p_value'])}: "
                 + _verdict(d["p_value"], d["difference"], "AUC"))  # fmt: skip
    for key, who in (("sensitivity", "positives"), ("specificity", "negatives")):
        t = r["mcnemar"][key]
        diff = a[key] - b[key]
        lines.append(f"{key}: of {t['n']} {who}, only A right on {t['only_a']}, only B right on "
                     f"{t['only_b']}; McNemar exact {_p(t['p_value'])}: "
                     + _verdict(t["p_value"], diff, key))  # fmt: skip
    g = r["agreement"]
    kappa = "undefined" if g["kappa"] is None or g["kappa"] != g["kappa"] else f"{g['kappa']:.3f}"
    lines.append(f"agreement: same decision on {g['same']} of {r['n']} images "
                 f"({g['same'] / r['n']:.1%}), Cohen's kappa {kappa}")  # fmt: skip
    if r.get("subgroups"):
        from cnnlab.evaluate.subgroups import format_subgroups

        for m, rows in zip(r["models"], r["subgroups"]["models"], strict=True):
            lines += format_subgroups(f"{r['subgroups']['field']}, {m['name']}", rows)
    if r.get("unpaired"):
        lines.append(f"({r['unpaired']} images read by one model only were left out)")
    return "\n".join(lines)


def _verdict(p: float, diff: float, what: str) -> str:
    if p >= 0.05:
        return f"no evidence that the {what} differs"
    return f"A's {what} is {'higher' if diff > 0 else 'lower'} (at the 5% level)"
