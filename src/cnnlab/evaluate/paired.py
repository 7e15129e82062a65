"""Two models judged on the same images: is one really better, or is the difference noise?

The images are shared, so the two models' errors are correlated and tests for independent
samples are wrong (too conservative, usually). Here:
- DeLong's test for two correlated ROC curves (DeLong, DeLong & Clarke-Pearson 1988), in Sun &
  Xu's O(n log n) mid-rank form (IEEE Signal Processing Letters 21, 2014): the AUC difference,
  its standard error, 95% interval and two-sided p-value, as R's pROC `roc.test(method =
  "delong", paired = TRUE)` gives them; and one AUC's DeLong interval (pROC's `ci.auc`).
- McNemar's exact test on the discordant pairs (a two-sided binomial test at 1/2): among the
  positives for sensitivity, among the negatives for specificity.
- Cohen's kappa: how much the two models' decisions agree beyond chance.
tests/evaluate/test_paired.py checks these against pROC and R's binom.test to 1e-6.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import binomtest, norm, rankdata

from cnnlab.errors import CnnlabError


def _split(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y).astype(int)
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    if not len(pos) or not len(neg):
        raise CnnlabError("an AUC needs images of both classes; this set has only one")
    return pos, neg


def _structural_components(scores: np.ndarray, y: np.ndarray):
    """Sun & Xu's mid-rank form of DeLong's placements, for K score rows at once: the AUCs (K,),
    and the placement values of each positive (K, m) and each negative (K, n)."""
    pos, neg = _split(y)
    m, n = len(pos), len(neg)
    x, z = scores[:, pos], scores[:, neg]
    tx = rankdata(x, axis=1)  # mid-ranks among the positives
    tz = rankdata(z, axis=1)  # among the negatives
    t = rankdata(np.concatenate([x, z], axis=1), axis=1)  # among all
    auc = (t[:, :m].sum(1) - m * (m + 1) / 2) / (m * n)
    v10 = (t[:, :m] - tx) / n  # share of negatives each positive outranks (ties count half)
    v01 = 1.0 - (t[:, m:] - tz) / m  # share of positives that outrank each negative
    return auc, v10, v01


def _delong_covariance(scores: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    auc, v10, v01 = _structural_components(scores, y)
    m, n = v10.shape[1], v01.shape[1]
    s10 = np.atleast_2d(np.cov(v10)) if m > 1 else np.zeros((len(auc), len(auc)))
    s01 = np.atleast_2d(np.cov(v01)) if n > 1 else np.zeros((len(auc), len(auc)))
    return auc, s10 / m + s01 / n


def delong_auc(p: np.ndarray, y: np.ndarray, level: float = 0.95) -> dict[str, Any]:
    """One model's AUC with DeLong's standard error and interval (clipped to [0, 1], as pROC's
    `ci.auc(method = "delong")`)."""
    auc, cov = _delong_covariance(np.asarray(p, dtype=np.float64)[None], y)
    se = float(np.sqrt(max(cov[0, 0], 0.0)))
    half = norm.ppf(0.5 + level / 2) * se
    a = float(auc[0])
    return {"auc": a, "se": se, "ci": [max(a - half, 0.0), min(a + half, 1.0)]}


def delong_test(
    p_a: np.ndarray, p_b: np.ndarray, y: np.ndarray, level: float = 0.95
) -> dict[str, Any]:
    """DeLong's test that two models scored on the same images have the same AUC: AUC of each,
    the difference A - B with its standard error and interval, z and the two-sided p-value."""
    scores = np.stack([np.asarray(p_a, dtype=np.float64), np.asarray(p_b, dtype=np.float64)])
    auc, cov = _delong_covariance(scores, y)
    diff = float(auc[0] - auc[1])
    var = float(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    se = float(np.sqrt(max(var, 0.0)))
    if se > 0:
        z = diff / se
        p_value = float(2 * norm.sf(abs(z)))
    else:  # identical rankings (or both perfect): no evidence of a difference
        z, p_value = 0.0, 1.0
    half = norm.ppf(0.5 + level / 2) * se
    return {"auc_a": float(auc[0]), "auc_b": float(auc[1]), "difference": diff, "se": se,
            "ci": [diff - half, diff + half], "z": float(z), "p_value": p_value}  # fmt: skip


def mcnemar_exact(correct_a: np.ndarray, correct_b: np.ndarray) -> dict[str, Any]:
    """McNemar's exact test on paired right/wrong outcomes: only the discordant pairs count (A
    right and B wrong, or the reverse); under 'no difference' each is a fair coin."""
    a, b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    n = only_a + only_b
    p_value = float(binomtest(only_a, n, 0.5).pvalue) if n else 1.0
    return {"n": int(len(a)), "only_a": only_a, "only_b": only_b, "p_value": p_value}


def mcnemar_rates(pred_a: np.ndarray, pred_b: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """McNemar's exact test for sensitivity (on the positives) and specificity (the negatives)."""
    y = np.asarray(y).astype(int)
    ok_a, ok_b = np.asarray(pred_a) == y, np.asarray(pred_b) == y
    return {
        "sensitivity": mcnemar_exact(ok_a[y == 1], ok_b[y == 1]),
        "specificity": mcnemar_exact(ok_a[y == 0], ok_b[y == 0]),
    }


def cohen_kappa(pred_a: np.ndarray, pred_b: np.ndarray) -> float:
    """Agreement of the two models' decisions beyond what their rates give by chance (1: always
    agree, 0: as often as chance); NaN when both always say the same one class."""
    from sklearn.metrics import cohen_kappa_score

    a, b = np.asarray(pred_a).astype(int), np.asarray(pred_b).astype(int)
    if len(set(a.tolist()) | set(b.tolist())) < 2:
        return float("nan")
    return float(cohen_kappa_score(a, b))
