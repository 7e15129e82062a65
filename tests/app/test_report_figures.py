"""The Model page's views, drawn from bundle.json alone (what training stored)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score, roc_curve

from cnnlab.evaluate.calibration import calibration_bins
from cnnlab.evaluate.medical import roc_points
from cnnlab.report.card import card_section
from cnnlab.report.figures import confusion_figure, reliability_figure, roc_figure, roc_from_bins
from cnnlab.report.metrics import metric_rows


@pytest.fixture(scope="module")
def metrics(app_bundle):
    return json.loads((app_bundle / "bundle.json").read_text())["metrics"]


def test_roc_points_are_the_curve_thinned():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 3000)
    p = np.clip(0.3 * y + rng.normal(0.35, 0.2, 3000), 0, 1)
    pts = roc_points(p, y, max_points=50)
    fpr, tpr = np.array(pts["fpr"]), np.array(pts["tpr"])
    assert 2 < len(fpr) <= 50 and (fpr[0], tpr[0]) == (0, 0) and (fpr[-1], tpr[-1]) == (1, 1)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    # the area under the thinned curve stays close to the true AUC
    assert abs(np.trapezoid(tpr, fpr) - roc_auc_score(y, p)) < 0.01
    full_fpr, _, _ = roc_curve(y, p)
    assert len(full_fpr) > 50
    assert roc_points(p, np.ones_like(y)) == {"fpr": [], "tpr": []}


def test_metric_rows_carry_values_and_intervals(metrics):
    rows = {r["metric"]: r for r in metric_rows(metrics)}
    assert list(rows)[:3] == ["ROC-AUC", "Sensitivity", "Specificity"]
    assert rows["ROC-AUC"]["value"] == pytest.approx(metrics["auc"])
    lo, hi = metrics["sensitivity_ci"]
    assert (rows["Sensitivity"]["ci_low"], rows["Sensitivity"]["ci_high"]) == (lo, hi)
    assert lo <= rows["Sensitivity"]["value"] <= hi
    assert rows["ECE"]["ci_low"] is None  # no interval for ECE
    plain = metric_rows({"accuracy": 0.99, "loss": 0.03})
    assert [r["metric"] for r in plain] == ["Accuracy", "Loss"]


def test_roc_figure_draws_the_stored_points_and_operating_point(metrics):
    fig = roc_figure(metrics, "Pneumonia")
    curve, chance, point = fig.axes[0].get_lines()
    assert list(curve.get_xdata()) == metrics["roc_curve"]["fpr"]
    assert list(curve.get_ydata()) == metrics["roc_curve"]["tpr"]
    assert point.get_xdata()[0] == pytest.approx(1 - metrics["specificity"])
    assert point.get_ydata()[0] == pytest.approx(metrics["sensitivity"])
    assert f"AUC {metrics['auc']:.3f}" in curve.get_label()
    assert roc_figure({"auc": 0.9}) is None


def test_confusion_and_reliability_figures(metrics):
    fig = confusion_figure(metrics["confusion_matrix"], ["NORMAL", "PNEUMONIA"])
    texts = sorted(int(t.get_text()) for t in fig.axes[0].texts)
    assert texts == sorted(np.ravel(metrics["confusion_matrix"]).tolist())
    bins = metrics["calibration_bins"]
    fig = reliability_figure(bins, metrics["ece"])
    model_line = fig.axes[0].get_lines()[1]
    assert list(model_line.get_ydata()) == [b["rate"] for b in bins]
    assert sum(p.get_height() for p in fig.axes[1].patches) == sum(b["n"] for b in bins)
    assert reliability_figure([]) is None


def test_card_section(app_bundle):
    card = (app_bundle / "card.md").read_text()
    use = card_section(card, "Intended use")
    assert use.startswith("Teaching and research") and "##" not in use
    assert card_section(card, "No such heading") == ""


def test_coarse_roc_from_bins_is_exact_at_the_bin_edges():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 500)
    p = np.clip(0.35 * y + rng.uniform(0, 0.65, 500), 0, 1)
    bins = calibration_bins(p, y)
    roc = roc_from_bins(bins)
    edges = [b["lo"] for b in reversed(bins)]  # each point: threshold at a bin's lower edge
    for edge, fpr, tpr in zip(edges, roc["fpr"][1:], roc["tpr"][1:], strict=True):
        above = p > edge if edge > 0 else np.ones_like(p, bool)  # bins are (lo, hi]
        assert tpr == pytest.approx((above & (y == 1)).sum() / (y == 1).sum(), abs=1e-5)
        assert fpr == pytest.approx((above & (y == 0)).sum() / (y == 0).sum(), abs=1e-5)
    assert (roc["fpr"][-1], roc["tpr"][-1]) == pytest.approx((1, 1))


def test_roc_figure_falls_back_to_the_bins(metrics):
    old = {k: v for k, v in metrics.items() if k != "roc_curve"}  # a bundle from before
    curve = roc_figure(old, "Pneumonia").axes[0].get_lines()[0]
    assert list(curve.get_xdata()) == roc_from_bins(old["calibration_bins"])["fpr"]
    assert "calibration bins" in curve.get_label()


def curve_under_legend(fig, line: int) -> int:
    """How many points along the first axes' `line` (each segment sampled 50 times) lie under
    its legend, as drawn."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig).draw()
    ax = fig.axes[0]
    box = ax.get_legend().get_window_extent()
    curve = ax.get_lines()[line]
    xy = np.column_stack([curve.get_xdata(), curve.get_ydata()]).astype(float)
    t = np.linspace(0, 1, 50)[:, None, None]
    x, y = ax.transData.transform((xy[:-1] + t * (xy[1:] - xy[:-1])).reshape(-1, 2)).T
    return int(((x >= box.x0) & (x <= box.x1) & (y >= box.y0) & (y <= box.y1)).sum())


def test_legends_leave_the_shipped_models_curves_in_view():
    """The ROC legend once spanned the axes and hid the curve where it leaves x = 0; the
    calibration legend sat on the steep start of the curve."""
    from cnnlab.bundle.catalog import shipped_bundles

    shipped = json.loads((shipped_bundles()["pneumonia"] / "bundle.json").read_text())["metrics"]
    assert curve_under_legend(roc_figure(shipped, "Pneumonia"), 0) == 0  # the model's curve
    fig = reliability_figure(shipped["calibration_bins"], shipped["ece"])
    assert curve_under_legend(fig, 1) == 0
