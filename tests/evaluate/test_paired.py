"""Paired comparison of two models: DeLong's test, McNemar's exact test and Cohen's kappa agree
with R to 1e-6, and the fast mid-rank DeLong equals the textbook O(n^2) one."""

from __future__ import annotations

import numpy as np
import pytest

from cnnlab.errors import CnnlabError
from cnnlab.evaluate.medical import bootstrap_intervals, resample_indices
from cnnlab.evaluate.paired import cohen_kappa, delong_auc, delong_test, mcnemar_rates


def reference_data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """tests/evaluate/paired_reference.R's data set, built by the same integer arithmetic."""
    i = np.arange(80)
    y = ((i * 13) % 80 < 32).astype(int)
    a = ((i * 17) % 23 + 9 * y) / 32
    b = ((i * 29) % 19 + 6 * y + (i % 3)) / 28
    return y, a, b


# From R 4 with pROC 1.18.0 and stats::binom.test, by `Rscript tests/evaluate/paired_reference.R`:
#   ra <- roc(y, a, levels = c(0, 1), direction = "<"); rb <- roc(y, b, ...)
#   roc.test(ra, rb, method = "delong", paired = TRUE)   -> z, p_value, diff_ci
#   ci.auc(ra, method = "delong"); ci.auc(rb, ...)       -> ci_a, ci_b
#   binom.test(only_a, only_a + only_b, 0.5)$p.value      -> McNemar's exact p
R = {
    "auc_a": 0.816406250000, "auc_b": 0.710611979167,
    "ci_a": [0.724864778730, 0.907947721270], "ci_b": [0.596308844792, 0.824915113541],
    "z": 1.616115021126, "p_value": 0.106069447143,
    "diff_ci": [-0.022509072613, 0.234097614280],
    "sensitivity": (8, 4, 0.387695312500), "specificity": (12, 10, 0.831811904907),
    "kappa": 0.137055837563,
}  # fmt: skip


def test_delong_agrees_with_proc() -> None:
    y, a, b = reference_data()
    t = delong_test(a, b, y)
    assert t["auc_a"] == pytest.approx(R["auc_a"], abs=1e-6)
    assert t["auc_b"] == pytest.approx(R["auc_b"], abs=1e-6)
    assert t["difference"] == pytest.approx(R["auc_a"] - R["auc_b"], abs=1e-6)
    assert t["z"] == pytest.approx(R["z"], abs=1e-6)
    assert t["p_value"] == pytest.approx(R["p_value"], abs=1e-6)
    assert t["ci"] == pytest.approx(R["diff_ci"], abs=1e-6)
    assert delong_auc(a, y)["ci"] == pytest.approx(R["ci_a"], abs=1e-6)
    assert delong_auc(b, y)["ci"] == pytest.approx(R["ci_b"], abs=1e-6)
    swapped = delong_test(b, a, y)  # the order of the models flips only the sign
    assert swapped["z"] == pytest.approx(-t["z"]) and swapped["p_value"] == pytest.approx(
        t["p_value"]
    )


def test_mcnemar_and_kappa_agree_with_r() -> None:
    y, a, b = reference_data()
    tests = mcnemar_rates((a >= 0.5).astype(int), (b >= 0.5).astype(int), y)
    for key in ("sensitivity", "specificity"):
        only_a, only_b, p = R[key]
        assert (tests[key]["only_a"], tests[key]["only_b"]) == (only_a, only_b)
        assert tests[key]["p_value"] == pytest.approx(p, abs=1e-6)
    assert tests["sensitivity"]["n"] == 32 and tests["specificity"]["n"] == 48
    assert cohen_kappa(a >= 0.5, b >= 0.5) == pytest.approx(R["kappa"], abs=1e-6)


def _delong_quadratic(p_a, p_b, y):
    """DeLong 1988 as written: placements by comparing every positive with every negative."""
    pos, neg = p_a[y == 1], p_a[y == 0]
    out = []
    for s in (p_a, p_b):
        x, z = s[y == 1], s[y == 0]
        psi = (x[:, None] > z[None]) + 0.5 * (x[:, None] == z[None])
        out.append((psi.mean(), psi.mean(1), psi.mean(0)))
    s10 = np.cov(np.stack([o[1] for o in out]))
    s01 = np.cov(np.stack([o[2] for o in out]))
    cov = s10 / len(pos) + s01 / len(neg)
    return out[0][0] - out[1][0], cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]


def test_fast_delong_equals_the_quadratic_definition() -> None:
    rng = np.random.default_rng(5)
    y = (rng.random(300) < 0.3).astype(int)
    a = np.round(rng.normal(y * 1.0, 1.0), 1)  # rounded: many ties
    b = np.round(0.6 * a + rng.normal(y * 0.5, 0.8), 1)
    diff, var = _delong_quadratic(a, b, y)
    t = delong_test(a, b, y)
    assert t["difference"] == pytest.approx(diff, abs=1e-12)
    assert t["se"] ** 2 == pytest.approx(var, rel=1e-9)


def test_identical_models_and_one_class_sets() -> None:
    y, a, _ = reference_data()
    same = delong_test(a, a, y)
    assert same["difference"] == 0 and same["p_value"] == 1.0
    assert mcnemar_rates(a >= 0.5, a >= 0.5, y)["sensitivity"]["p_value"] == 1.0
    with pytest.raises(CnnlabError, match="both classes"):
        delong_test(a, a, np.ones_like(y))


def test_stratified_bootstrap_keeps_the_class_counts_and_is_seeded() -> None:
    y, a, _ = reference_data()
    idx = resample_indices(y, 50, 3, stratified=True)
    assert (y[idx].sum(1) == y.sum()).all()  # every resample has the 32 positives' count
    assert not (y[resample_indices(y, 50, 3, stratified=False)].sum(1) == y.sum()).all()
    ci = bootstrap_intervals(a, y, 0.5, n_boot=200, seed=3, stratified=True)
    assert ci == bootstrap_intervals(a, y, 0.5, n_boot=200, seed=3, stratified=True)
    assert ci["auc"][0] < R["auc_a"] < ci["auc"][1]
    # close to DeLong's interval (both estimate the same spread)
    assert ci["auc"] == pytest.approx(R["ci_a"], abs=0.03)
