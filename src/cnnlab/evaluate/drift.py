"""Drift: have a site's inputs moved since the model was validated?

A period's decisions (from the decision store, or `predict --json` logs) are set against what
the bundle keeps of its validation split: the validation logits in bundle.json
(`validation_scores`, every image's, so nothing more needs storing) give the distribution of
p(positive) at the bundle's current temperature, and the out-of-distribution check's cut-off
percentile gives the share of validation images beyond it (1% at the 99th).

- Population stability index (PSI) over ten bins at the validation deciles: under 0.1 no
  shift, 0.1-0.25 a moderate one, over 0.25 a major one (the credit-scoring rule of thumb).
- Two-sample Kolmogorov-Smirnov test (scipy): the largest gap between the two distributions.
- The share flagged out of distribution against the validation share (exact binomial test).
- The share called positive at the bundle's threshold, beside the validation share.

The probabilities move when the images change (another scanner, exposure, population) and
also when the disease becomes more or less common: drift says that something moved, and the
share called positive beside the out-of-distribution share hints at which.

Probabilities recorded at another temperature are put back on the bundle's scale first (the
raw logit is temperature x logit(p)), so a recalibration does not read as drift.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any

import numpy as np

from cnnlab.errors import CnnlabError

PSI_MODERATE, PSI_MAJOR = 0.1, 0.25
MIN_PERIOD = 30  # fewer decisions than this: too few to judge
ALPHA = 0.01
EPS = 1e-4  # a bin's share floor, so an empty bin does not make the index infinite


def population_stability_index(reference: np.ndarray, period: np.ndarray, bins: int = 10) -> float:
    """PSI = sum over bins of (period share - reference share) x ln(period / reference), with
    bins at the reference's quantiles (each holds about 1/bins of the reference)."""
    ref, cur = np.asarray(reference, dtype=np.float64), np.asarray(period, dtype=np.float64)
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)[1:-1]))
    e = np.bincount(np.searchsorted(edges, ref, side="right"), minlength=len(edges) + 1) / len(ref)
    a = np.bincount(np.searchsorted(edges, cur, side="right"), minlength=len(edges) + 1) / len(cur)
    e, a = np.maximum(e, EPS), np.maximum(a, EPS)
    return float(np.sum((a - e) * np.log(a / e)))


def reference_of(meta: dict[str, Any]) -> dict[str, Any]:
    """What a bundle.json keeps of its validation: p(positive) of every validation image at the
    bundle's current temperature, its threshold, the share called positive there, and the
    expected out-of-distribution share. Read from the record alone: no model is loaded."""
    import torch

    from cnnlab.runtime.decision import Decision

    name = meta.get("name") or "the bundle"
    binary = meta.get("class_mode") == "binary"
    logits = (meta.get("validation_scores") or {}).get("logits")
    if not binary or not logits:
        raise CnnlabError(f"{name} keeps no validation scores (binary bundles trained by cnnlab "
                          "keep them in bundle.json): nothing to measure drift against")  # fmt: skip
    rule = Decision.from_record(meta.get("decision"), binary)
    z = torch.tensor(logits, dtype=torch.float64).reshape(len(logits), -1)[:, :1]
    p = rule.probabilities(z)[:, 1].numpy()  # the bundle's own calibrated p(positive)
    pct = (meta.get("ood") or {}).get("percentile")
    return {"name": name, "n": len(p), "p": p, "threshold": float(rule.threshold),
            "temperature": float(rule.temperature),
            "positive_share": float((p >= rule.threshold).mean()),
            "ood_share": (1 - float(pct) / 100) if pct is not None else None}  # fmt: skip


def _on_bundle_scale(p: float, recorded_t: float | None, bundle_t: float) -> float:
    if recorded_t is None or abs(recorded_t - bundle_t) < 1e-9 or not 0 < p < 1:
        return p
    raw = recorded_t * math.log(p / (1 - p))
    return 1 / (1 + math.exp(-raw / bundle_t))


def period_from_store(
    reference: dict[str, Any],
    since: datetime | None,
    until: datetime | None,
    model: str | None,
    url: str | None,
) -> dict[str, Any]:
    """The period's screened decisions of `model` (default: the bundle's name) from the store."""
    from cnnlab.records.store import DecisionStore

    decisions = DecisionStore(url).query(since=since, until=until, model=model or reference["name"])
    return period_of(decisions, reference)


def period_of(decisions, reference: dict[str, Any]) -> dict[str, Any]:
    """The period of a list of `records.Decision` (the screened ones count)."""
    return _period([(d.probability, d.temperature, d.out_of_distribution, d.time)
                    for d in decisions if d.screened], reference)  # fmt: skip


def shares_by_bin(reference: np.ndarray, period: np.ndarray, bins: int = 10) -> dict[str, list]:
    """The share of each set in equal-width bins of p(positive), to draw both side by side."""
    edges = np.linspace(0, 1, bins + 1)
    ref = np.histogram(reference, edges)[0] / max(len(reference), 1)
    cur = np.histogram(period, edges)[0] / max(len(period), 1)
    names = [f"{lo:.1f}-{hi:.1f}" for lo, hi in zip(edges[:-1], edges[1:], strict=True)]
    return {"p(positive)": names, "validation": ref.tolist(), "period": cur.tolist()}


def period_from_logs(reference: dict[str, Any], files: list[str]) -> dict[str, Any]:
    """The period from `cnnlab predict --json` outputs ({"model", "predictions": [row...]}, or
    one such object per line)."""
    from cnnlab.fileio import read_capped

    rows = []
    for name in files:
        try:
            text = read_capped(name).decode("utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise CnnlabError(f"--from-json {name}: {e}") from None
        try:
            docs = [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError:
            try:
                docs = [json.loads(text)]
            except json.JSONDecodeError as e:
                raise CnnlabError(
                    f"--from-json {name} is not `cnnlab predict --json` output: {e}"
                ) from None
        for doc in docs:
            preds = doc.get("predictions") if isinstance(doc, dict) else None
            if not isinstance(preds, list):
                raise CnnlabError(f"--from-json {name} is not `cnnlab predict --json` output "
                                  "(no predictions list)")  # fmt: skip
            rows += [(r.get("positive_probability"), None, r.get("out_of_distribution"), None)
                     for r in preds if isinstance(r, dict) and r.get("screened", True)]  # fmt: skip
    return _period(rows, reference)


def _period(rows: list[tuple], reference: dict[str, Any]) -> dict[str, Any]:
    p = np.array([_on_bundle_scale(float(prob), t, reference["temperature"])
                  for prob, t, _, _ in rows if prob is not None], dtype=np.float64)  # fmt: skip
    flags = [o for _, _, o, _ in rows if o is not None]
    times = sorted(t for *_, t in rows if t is not None)
    return {"n": len(p), "p": p, "ood_checked": len(flags), "ood_flagged": int(sum(flags)),
            "first": times[0].isoformat() if times else None,
            "last": times[-1].isoformat() if times else None}  # fmt: skip


def drift_report(reference: dict[str, Any], period: dict[str, Any]) -> dict:
    """PSI, KS and the out-of-distribution share of a period against the reference, and a
    verdict: `drift`, `watch`, `stable` or `too few` decisions."""
    from scipy.stats import binomtest, ks_2samp

    p, ref = period["p"], reference["p"]
    out: dict[str, Any] = {"n": period["n"], "reference_n": reference["n"],
                           "first": period.get("first"), "last": period.get("last")}  # fmt: skip
    reasons: list[str] = []
    if period["n"] < MIN_PERIOD:
        out.update(verdict="too few", reasons=[f"{period['n']} decisions in the period; at least "
                                               f"{MIN_PERIOD} are needed to judge"])  # fmt: skip
        return out
    psi = population_stability_index(ref, p)
    ks = ks_2samp(ref, p)
    out["psi"], out["ks"] = psi, {"statistic": float(ks.statistic), "p_value": float(ks.pvalue)}
    out["mean_probability"] = {"reference": float(ref.mean()), "period": float(p.mean())}
    out["positive_share"] = {"reference": reference["positive_share"],
                             "period": float((p >= reference["threshold"]).mean())}  # fmt: skip
    moved = psi >= PSI_MAJOR and ks.pvalue < ALPHA
    if psi >= PSI_MAJOR:
        reasons.append(
            f"the probabilities moved: PSI {psi:.3f} (over {PSI_MAJOR} is a major shift)"
        )
    elif psi >= PSI_MODERATE:
        reasons.append(
            f"the probabilities moved a little: PSI {psi:.3f} ({PSI_MODERATE}-{PSI_MAJOR})"
        )
    if ks.pvalue < ALPHA:
        reasons.append(f"KS test: the distributions differ (D {ks.statistic:.3f}, "
                       f"p {ks.pvalue:.2g})")  # fmt: skip
    expected = reference.get("ood_share")
    if period["ood_checked"] and expected is not None:
        k, n = period["ood_flagged"], period["ood_checked"]
        test = binomtest(k, n, expected, alternative="greater")
        out["ood"] = {"flagged": k, "checked": n, "share": k / n, "reference_share": expected,
                      "p_value": float(test.pvalue)}  # fmt: skip
        if test.pvalue < ALPHA:
            moved = True
            reasons.append(f"{k} of {n} inputs ({k / n:.1%}) did not look like the training "
                           f"images, against {expected:.1%} at validation (p {test.pvalue:.2g})")  # fmt: skip
    out["verdict"] = "drift" if moved else ("watch" if reasons else "stable")
    out["reasons"] = reasons
    return out


def format_drift(r: dict[str, Any], model: str) -> str:
    span = f" from {r['first']} to {r['last']}" if r.get("first") else ""
    lines = [f"{model}: {r['n']} decisions{span}, against {r['reference_n']} validation images"]
    if "psi" in r:
        m, s = r["mean_probability"], r["positive_share"]
        lines += [
            f"  PSI {r['psi']:.3f}   KS D {r['ks']['statistic']:.3f} (p {r['ks']['p_value']:.3g})",
            f"  mean p(positive) {m['period']:.3f} (validation {m['reference']:.3f}); called "
            f"positive {s['period']:.1%} (validation {s['reference']:.1%})",
        ]
    if "ood" in r:
        o = r["ood"]
        lines.append(f"  out of distribution {o['flagged']} of {o['checked']} ({o['share']:.1%}; "
                     f"validation {o['reference_share']:.1%})")  # fmt: skip
    words = {"drift": "DRIFT: the inputs (or the share of positive cases) have moved since "
                      "validation",
             "watch": "watch: some movement, not enough to call drift",
             "stable": "stable: no sign the inputs have moved since validation",
             "too few": "too few decisions to judge"}  # fmt: skip
    lines.append(words[r["verdict"]] + (": " + "; ".join(r["reasons"]) if r["reasons"] else ""))
    return "\n".join(lines)


def reference_for(bundle_ref: str | None, model: str | None) -> dict[str, Any]:
    """The reference of `--bundle` (a folder or shipped name), else of the bundle `--model`
    names; loaded and verified as any bundle is."""
    from cnnlab.bundle.loading import load_bundle

    ref = bundle_ref or model
    if ref is None:
        raise CnnlabError("give --bundle (the bundle whose validation is the reference) or --model")
    bundle = load_bundle(ref)
    return reference_of({**bundle.meta, "name": bundle.name})
