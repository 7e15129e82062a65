"""Calibration and the decision rule of binary models, fitted on the validation split.

Temperature scaling divides the logits by one number T fitted to minimise the validation
log-loss: it changes how confident the probabilities are, never their order (the ROC
curve and AUC stay the same). The threshold on the calibrated p(positive) is chosen by
a policy: a target sensitivity (the highest threshold that still finds that share of
the positives), Youden's J (max sensitivity + specificity - 1), or a fixed value.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from cnnlab.runtime.decision import TEMPERATURE_RANGE, THRESHOLD_MARGIN

MIN_PER_CLASS = 20  # validation images of each class needed to fit a temperature


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The T > 0 that minimises the log-loss of `logits / T` (one logit: BCE; K logits: CE)."""
    z = logits.detach().double()
    y = labels.long()
    if len(y) == 0 or (z.shape[1] == 1 and y.min() == y.max()):
        return 1.0
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200, line_search_fn="strong_wolfe")

    def nll() -> torch.Tensor:
        opt.zero_grad()
        scaled = z / log_t.exp()
        if z.shape[1] == 1:
            loss = F.binary_cross_entropy_with_logits(scaled[:, 0], y.double())
        else:
            loss = F.cross_entropy(scaled, y)
        loss.backward()
        return loss

    opt.step(nll)
    t = float(log_t.detach().exp())
    low, high = TEMPERATURE_RANGE
    return float(min(max(t, low), high)) if math.isfinite(t) else 1.0


def at_prevalence(sensitivity, specificity, prevalence: float):
    """(PPV, NPV) at a site's prevalence by Bayes' theorem (Altman & Bland, BMJ 1994;309:102):
    a test's sensitivity and specificity carry over to another population; its predictive
    values do not, they follow how common the disease is there. Arrays work element-wise."""
    se, sp = np.asarray(sensitivity, dtype=np.float64), np.asarray(specificity, dtype=np.float64)
    tp, fn = se * prevalence, (1 - se) * prevalence
    tn, fp = sp * (1 - prevalence), (1 - sp) * (1 - prevalence)
    with np.errstate(invalid="ignore", divide="ignore"):
        return tp / (tp + fp), tn / (tn + fn)


def rates_by_threshold(p: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, ...]:
    """(thresholds, sensitivity, specificity): every distinct score as a threshold, ascending,
    with the rates of 'positive when p >= threshold'."""
    p, y = np.asarray(p, dtype=np.float64), np.asarray(y).astype(int)
    cuts = np.unique(p)
    pos, neg = np.sort(p[y == 1]), np.sort(p[y == 0])
    sens = 1 - np.searchsorted(pos, cuts, side="left") / max(len(pos), 1)
    spec = np.searchsorted(neg, cuts, side="left") / max(len(neg), 1)
    return cuts, sens, spec


def choose_threshold(
    p: np.ndarray,
    y: np.ndarray,
    policy: str,
    target_sensitivity: float = 0.95,
    fixed: float = 0.5,
    target_ppv: float = 0.5,
    prevalence: float | None = None,
) -> float:
    """The decision threshold on p(positive): predict positive when p >= threshold."""
    p, y = np.asarray(p, dtype=np.float64), np.asarray(y).astype(int)
    if policy == "fixed":
        return float(fixed)
    positives = np.sort(p[y == 1])[::-1]
    if len(positives) == 0 or (y == 0).sum() == 0:
        return float(fixed)
    if policy == "target_sensitivity":
        k = min(len(positives), max(1, math.ceil(target_sensitivity * len(positives) - 1e-9)))
        return _inside(_midway(p, float(positives[k - 1])))
    if policy == "target_ppv":  # the most sensitive rule whose PPV at the site reaches it
        cuts, sens, spec = rates_by_threshold(p, y)
        ppv = np.nan_to_num(at_prevalence(sens, spec, prevalence)[0], nan=0.0)
        reached = np.flatnonzero(ppv >= target_ppv)
        k = int(reached[0]) if len(reached) else int(np.argmax(ppv))
        return _inside(_midway(p, float(cuts[k])))
    if policy == "youden":
        from sklearn.metrics import roc_curve

        fpr, tpr, thresholds = roc_curve(y, p)
        best = int(np.argmax(tpr - fpr))
        return _inside(_midway(p, float(min(thresholds[best], 1.0))))
    raise ValueError(f"unknown threshold policy {policy!r}")


def _inside(threshold: float) -> float:
    """A threshold strictly inside (0, 1), as a bundle's decision must be: scores saturated at
    0 or 1 would otherwise put it on the edge, where it gives every image one label."""
    return min(max(threshold, THRESHOLD_MARGIN), 1.0 - THRESHOLD_MARGIN)


def _midway(p: np.ndarray, cut: float) -> float:
    """Halfway from `cut` down to the next lower score: the same decisions on the validation
    images, with a margin on both sides instead of a threshold sitting on one image's score."""
    below = p[p < cut]
    return (cut + float(below.max())) / 2 if len(below) else cut


def calibration_bins(p: np.ndarray, y: np.ndarray, bins: int = 10) -> list[dict]:
    """Equal-width bins of p(positive): mean prediction, observed positive rate, count."""
    p, y = np.asarray(p, dtype=np.float64), np.asarray(y, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1], right=True), 0, bins - 1)
    out = []
    for b in range(bins):
        m = which == b
        if m.any():
            out.append({"lo": float(edges[b]), "hi": float(edges[b + 1]), "n": int(m.sum()),
                        "mean_p": float(p[m].mean()), "rate": float(y[m].mean())})  # fmt: skip
    return out


def expected_calibration_error(p: np.ndarray, y: np.ndarray, bins: int = 10) -> float:
    """ECE: the count-weighted mean gap between predicted probability and observed rate."""
    n = max(1, len(p))
    return float(
        sum(b["n"] * abs(b["mean_p"] - b["rate"]) for b in calibration_bins(p, y, bins)) / n
    )


def brier_score(p: np.ndarray, y: np.ndarray) -> float:
    p, y = np.asarray(p, dtype=np.float64), np.asarray(y, dtype=np.float64)
    return float(np.mean((p - y) ** 2)) if len(p) else float("nan")


def fit_decision(
    logits: torch.Tensor | None, labels: torch.Tensor | None, classes: list[str], cfg
) -> dict:
    """bundle.json's `decision` for a binary model: temperature and threshold fitted on the
    validation logits by the recipe's `decision` section (`fixed` when there is no val split)."""
    policy = cfg.policy
    temperature = 1.0
    if logits is None or labels is None or len(labels) == 0:
        policy = "fixed"
    elif cfg.calibrate and min(int((labels == 0).sum()), int((labels == 1).sum())) >= MIN_PER_CLASS:
        temperature = fit_temperature(logits, labels)  # fewer images would overfit T itself
    if policy == "fixed":
        threshold = cfg.threshold
    else:
        from cnnlab.runtime.decision import probabilities

        p = probabilities(logits, temperature)[:, 1].numpy()
        threshold = choose_threshold(p, labels.numpy(), policy, cfg.target_sensitivity,
                                     cfg.threshold, cfg.target_ppv, cfg.prevalence)  # fmt: skip
    described = {
        "fixed": f"fixed {cfg.threshold:g}",
        "youden": "Youden's J on the validation split",
        "target_sensitivity": f"sensitivity >= {cfg.target_sensitivity:g} on the validation split",
        "target_ppv": f"PPV >= {cfg.target_ppv:g} at prevalence {cfg.prevalence or 0:g} on the "
        "validation split",
    }[policy]
    named = {"target_sensitivity": f"target_sensitivity:{cfg.target_sensitivity:g}",
             "target_ppv": f"target_ppv:{cfg.target_ppv:g}@{cfg.prevalence or 0:g}"}  # fmt: skip
    return {
        # down: val sensitivity holds (and still inside (0, 1))
        "threshold": max(math.floor(float(threshold) * 1e6) / 1e6, THRESHOLD_MARGIN),
        "temperature": round(float(temperature), 6),
        "policy": named.get(policy, policy),
        "policy_text": described,
        "positive_class": classes[1],
        "fitted_on": "val" if policy != "fixed" or temperature != 1.0 else "none",
    }
