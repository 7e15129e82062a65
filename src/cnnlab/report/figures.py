"""Every chart cnnlab draws of a model's results, from numbers alone, and the one helper that
saves a figure: training curves, ROC and precision-recall curves, the confusion matrix and the
reliability diagram.

Training and `cnnlab evaluate --out` write them as PNG files (`save_figure`); the app's Model
page draws the same views from what bundle.json stores (`png_bytes`), so one drawing serves
both. Figures are built outside pyplot's global state, so app sessions may draw in parallel.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab.fileio import atomic_path
from cnnlab.report.metrics import finite_number


def save_figure(fig, path: str | Path, dpi: int = 100) -> Path:
    """Write a figure as a PNG, atomically (no half-written file on failure), and release it."""
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=dpi, format="png")
    finally:
        _release(fig)
    return path


MIN_TEXT_PX = 11  # the smallest text a page shows, in CSS pixels as the figure is displayed


def png_bytes(fig, dpi: int = 100, shown_px: int | None = None) -> bytes:
    """A figure rendered to PNG bytes (for a page; bytes can be cached, figures leak if kept).
    `shown_px`: the narrowest width the page displays it at; its text is enlarged to be at
    least MIN_TEXT_PX there (a figure scaled down into a column otherwise shrinks to 6 px)."""
    buf = io.BytesIO()
    try:
        if shown_px:
            fit_text(fig, shown_px)
        fig.savefig(buf, format="png", dpi=dpi)
    finally:
        _release(fig)
    return buf.getvalue()


def fit_text(fig, shown_px: int, min_px: float = MIN_TEXT_PX):
    """Every text of `fig` (titles, labels, tick labels, legends) at least `min_px` tall when
    the whole figure is displayed `shown_px` wide, whatever its size in inches or its dpi."""
    from matplotlib.text import Text

    min_pt = min_px * 72 * fig.get_figwidth() / shown_px
    fig.draw_without_rendering()  # tick labels exist only once drawn (any canvas, even none)
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            labels = axis.get_ticklabels()
            if labels and labels[0].get_fontsize() < min_pt:
                axis.set_tick_params(labelsize=min_pt)
    for text in fig.findobj(Text):
        if text.get_text() and text.get_fontsize() < min_pt:
            text.set_fontsize(min_pt)
    _wrap_titles(fig)
    return fig


def _wrap_titles(fig) -> None:
    """Titles grown wider than the figure wrapped onto lines (else they run off its edges):
    after the layer's name first, so "32 / maps" is never split from its number."""
    import textwrap

    fig.draw_without_rendering()  # the sizes just set, laid out
    width = fig.get_figwidth() * fig.dpi
    for ax in fig.axes:
        title = ax.title
        centre = ax.get_window_extent().x0 + ax.get_window_extent().width / 2
        room = 0.95 * 2 * min(centre, width - centre)  # centred on its axes, not the figure
        wide = title.get_window_extent().width
        text = title.get_text()
        if text and wide > room:  # "layer: what it shows" breaks after the name first
            chars = max(12, int(len(text) * room / wide))
            parts = text.replace(": ", ":\n", 1).split("\n")
            title.set_text("\n".join(textwrap.fill(part, chars) for part in parts))


def _release(fig) -> None:
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is not None:  # pyplot keeps the figures it made until closed; ours go with their
        pyplot.close(fig)  # last reference


def _figure(**kwargs):
    """A figure outside pyplot's global state: safe when app sessions draw in parallel threads."""
    from matplotlib.figure import Figure

    return Figure(layout="constrained", **kwargs)


def roc_from_bins(bins: list[dict[str, float]]) -> dict[str, list[float]]:
    """A coarse ROC from the stored calibration bins: exact at the bin edges used as thresholds
    (each bin's count and positive rate say how many positives and negatives lie above an edge)."""
    pos = [b["n"] * b["rate"] for b in bins]
    neg = [b["n"] * (1 - b["rate"]) for b in bins]
    if not bins or sum(pos) <= 0 or sum(neg) <= 0:
        return {"fpr": [], "tpr": []}
    fpr, tpr = [0.0], [0.0]
    for i in range(len(bins) - 1, -1, -1):  # lower the threshold one bin at a time
        fpr.append(fpr[-1] + neg[i] / sum(neg))
        tpr.append(tpr[-1] + pos[i] / sum(pos))
    return {"fpr": [round(v, 6) for v in fpr], "tpr": [round(v, 6) for v in tpr]}


def roc_figure(
    metrics: dict[str, Any], positive: str = "positive", title: str = "ROC curve (validation)"
):
    """The stored ROC curve with the operating point; from the calibration bins (coarse) when the
    bundle predates stored ROC points; None when it has neither."""
    roc, coarse = metrics.get("roc_curve"), False
    if not roc or not roc.get("fpr"):
        roc, coarse = roc_from_bins(metrics.get("calibration_bins") or []), True
    if not roc["fpr"]:
        return None
    fig = _figure(figsize=(4.6, 4.4))
    ax = fig.subplots()
    auc = finite_number(metrics.get("auc"))
    lo, hi = (metrics.get("auc_ci") or [None, None])[:2]
    # short lines: a legend as wide as the axes covers the curve where it leaves x = 0
    label = f"ROC, AUC {auc:.3f}" if auc is not None else "ROC"
    if finite_number(lo) is not None and finite_number(hi) is not None:
        label += f"\n(95% CI {lo:.3f}-{hi:.3f})"
    if coarse:
        label += f"\nfrom {len(metrics['calibration_bins'])} calibration bins"
    ax.plot(roc["fpr"], roc["tpr"], "o-" if coarse else "-", ms=3, label=label)
    ax.plot([0, 1], [0, 1], "--", color="grey", lw=1)
    sens, spec = (
        finite_number(metrics.get("sensitivity")),
        finite_number(metrics.get("specificity")),
    )
    if sens is not None and spec is not None:
        t = finite_number(metrics.get("threshold"))
        where = f"threshold {t:.3f}:" if t is not None else "operating point:"
        ax.plot(1 - spec, sens, "o", color="C3",
                label=f"{where}\nsens {sens:.3f}, spec {spec:.3f}")  # fmt: skip
    ax.set_xlabel("1 - specificity (false positive rate)")
    ax.set_ylabel(f"sensitivity ({positive} found)")
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=10)
    return fig


def confusion_figure(
    cm: list[list[int]], classes: list[str], title: str = "confusion matrix (validation)"
):
    """Counts in the cells, colour = share of the true class (rows true, columns predicted)."""
    m = np.asarray(cm)
    k = len(classes)
    side = max(3.6, 0.5 * k + 2)
    fig = _figure(figsize=(side + 0.8, side))
    ax = fig.subplots()
    norm = m / np.maximum(m.sum(1, keepdims=True), 1)
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(k), classes, rotation=45 if k > 3 else 0, ha="right" if k > 3 else "center")
    ax.set_yticks(range(k), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(k):
        for j in range(k):
            ax.text(j, i, str(m[i, j]), ha="center", va="center", fontsize=8 if k > 12 else 11,
                    color="white" if norm[i, j] > 0.5 else "black")  # fmt: skip
    fig.colorbar(im, ax=ax, fraction=0.046, label="share of the true class")
    ax.set_title(title, fontsize=10)
    return fig


def reliability_figure(
    bins: list[dict[str, float]], ece: float | None = None, title: str | None = None
):
    """Observed positive rate against mean predicted probability per stored bin, sized by count."""
    if not bins:
        return None
    fig = _figure(figsize=(4.6, 5.2))
    ax, hist = fig.subplots(2, 1, height_ratios=[3, 1], sharex=True)
    ax.plot([0, 1], [0, 1], "--", color="grey", lw=1, label="perfect calibration")
    ax.plot([b["mean_p"] for b in bins], [b["rate"] for b in bins], "o-", label="model")
    ax.set_ylabel("observed positive rate")
    ax.set_xlim(0, 1)
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)  # under the diagonal: where a calibrated curve is not
    if title is None:
        title = "calibration" + (f" (ECE {ece:.3f})" if finite_number(ece) is not None else "")
    ax.set_title(title, fontsize=10)
    hist.bar([(b["lo"] + b["hi"]) / 2 for b in bins], [b["n"] for b in bins],
             width=[b["hi"] - b["lo"] for b in bins], color="C0", alpha=0.7)  # fmt: skip
    hist.set_xlabel("predicted probability of the positive class")
    hist.set_ylabel("images")
    return fig


def pr_figure(p: np.ndarray, y: np.ndarray, at: dict[str, Any], title: str = "precision-recall"):
    """The precision-recall curve of scores `p` against labels `y`, with the operating point of
    report `at` (its threshold, sensitivity and PPV); None when `y` holds one class only."""
    from sklearn.metrics import average_precision_score, precision_recall_curve

    if y.min() == y.max():
        return None
    precision, recall, _ = precision_recall_curve(y, p)
    fig = _figure(figsize=(5, 5))
    ax = fig.subplots()
    ax.plot(recall, precision, label=f"PR (AP {average_precision_score(y, p):.3f})")
    ax.axhline(y.mean(), ls="--", color="grey", label=f"prevalence {y.mean():.3f}")
    ax.plot(at["sensitivity"], at["ppv"], "o", color="C3", label=f"threshold {at['threshold']:.3f}")
    ax.set_xlabel("recall (sensitivity)")
    ax.set_ylabel("precision (PPV)")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="lower left", fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def epoch_positions(history: list[dict[str, float]]) -> list[float]:
    """Where each epoch row ends on a run's epoch axis: 1, 2, 3, ... in order of the rows, so a
    transfer run's phases (each counting its epochs from 1) follow one another."""
    return [float(i + 1) for i in range(len(history))]


def _accuracy_limits(values: list[float]) -> tuple[float, float]:
    """A y range for accuracies: the data with a margin, at least 2 points wide (one epoch at
    99% is not drawn on an axis from 0.987 to 0.993), never below 0 or much past 1."""
    lo, hi = min(values), max(values)
    if hi - lo < 0.02:
        mid = min(max((lo + hi) / 2, 0.01), 0.99)
        lo, hi = mid - 0.01, mid + 0.01
    margin = 0.1 * (hi - lo)
    return max(0.0, lo - margin), min(1.005, hi + margin)


def _loss_axis(ax, values: list[float]) -> None:
    """From 0 up; a log axis when the loss falls by more than 20x (the first steps of a run)."""
    positive = [v for v in values if v > 0]
    if positive and max(positive) / min(positive) > 20:
        ax.set_yscale("log")
    else:
        ax.set_ylim(0, max(values) * 1.08 if values and max(values) > 0 else 1)


def _epoch_axis(ax, last: float) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.set_xlim(0, max(1.0, last) * 1.02)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")


def curves_figure(history: list[dict[str, float]], steps: list[dict[str, float]] | None = None):
    """Loss and accuracy over the run on an epoch axis from 0: training per step row (a thin
    line: a one-epoch run is a curve, not a dot) and per epoch, validation on the epochs
    validated. Accuracy axes stop at 1; loss axes start at 0 (log when the loss falls >20x)."""
    x = epoch_positions(history)
    steps = steps or []
    fig = _figure(figsize=(10, 3.8))
    for ax, key in zip(fig.subplots(1, 2), ("loss", "accuracy"), strict=True):
        values: list[float] = []
        if steps:
            ys = [r[key] for r in steps]
            ax.plot([r["epoch"] for r in steps], ys, "-", lw=0.9, alpha=0.55, color="C0",
                    marker="." if len(steps) <= 60 else None, label="train (per step)")  # fmt: skip
            values += ys
        ys = [r[key] for r in history]
        ax.plot(x, ys, "o-" if not steps else "o", color="C0", label="train (epoch)")
        values += ys
        val = [(xi, r[f"val_{key}"]) for xi, r in zip(x, history, strict=True) if f"val_{key}" in r]
        if val:  # only the validated epochs (train.validation_freq may skip some)
            ax.plot(*zip(*val, strict=True), "s-", color="C1", label="validation")
            values += [v for _, v in val]
        _epoch_axis(ax, max([*x, *(r["epoch"] for r in steps)], default=1.0))
        if key == "accuracy" and values:
            ax.set_ylim(*_accuracy_limits(values))
        elif values:
            _loss_axis(ax, values)
        ax.set_title(key if key == "accuracy" else "loss (val_loss: plain cross-entropy)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return fig


RUN_PANELS = (("loss", "training loss"), ("val_loss", "validation loss (plain cross-entropy)"),
              ("val_accuracy", "validation accuracy"))  # fmt: skip


def run_points(run: dict[str, Any]) -> dict[str, list[tuple[float, float]]]:
    """(epoch, value) per panel of one run: training loss per step where recorded (else per
    epoch), validation figures on the epochs validated; the picture and the chart draw these."""
    history, steps = run.get("history") or [], run.get("steps") or []
    x = epoch_positions(history)
    points = {}
    for key, _ in RUN_PANELS:
        if key == "loss" and steps:
            points[key] = [(float(r["epoch"]), float(r["loss"])) for r in steps if "loss" in r]
        else:
            points[key] = [
                (xi, float(r[key])) for xi, r in zip(x, history, strict=True) if key in r
            ]
    return points


def runs_figure(runs: list[dict[str, Any]]):
    """Several runs overlaid, one colour each: training loss (per step where recorded),
    validation loss and validation accuracy, on epoch axes from 0. Each run is a dict with
    `name`, `history` and `steps` (cnnlab.report.runs.RunRecord.curves())."""
    fig = _figure(figsize=(13, 4.4))
    axes = fig.subplots(1, 3)
    panels = RUN_PANELS
    last = 1.0
    values: dict[str, list[float]] = {k: [] for k, _ in panels}
    for i, run in enumerate(runs):
        colour = f"C{i % 10}"
        points = run_points(run)
        last = max([last, *(x for pts in points.values() for x, _ in pts)])
        for ax, (key, _) in zip(axes, panels, strict=True):
            pts = points[key]
            if not pts:
                continue
            style = "-" if len(pts) > 60 else ".-" if len(pts) > 1 else "o"
            ax.plot(*zip(*pts, strict=True), style, color=colour, lw=1.2, ms=6 if len(pts) == 1 else 4,
                    label=run["name"])  # fmt: skip
            values[key] += [v for _, v in pts]
    for ax, (key, title) in zip(axes, panels, strict=True):
        _epoch_axis(ax, last)
        if values[key]:
            if key == "val_accuracy":
                ax.set_ylim(*_accuracy_limits(values[key]))
            else:
                _loss_axis(ax, values[key])
        else:
            ax.text(0.5, 0.5, "not recorded", ha="center", va="center", transform=ax.transAxes,
                    color="grey")  # fmt: skip
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    for ax in axes[1:]:
        for h, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if label not in labels:
                handles.append(h)
                labels.append(label)
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncols=min(4, len(labels)),
                   fontsize=8)  # fmt: skip
    return fig


def mistakes_figure(
    images: list[np.ndarray], items: list[dict[str, Any]], classes: list[str], title: str = ""
):
    """The most confidently wrong images, one row per true class: each with the class predicted
    and the calibrated probability the model gave it. `images` are uint8 (C, H, W), one per
    item of `items` ({true, predicted, probability} with class indices)."""
    rows = sorted({it["true"] for it in items})
    if not rows:
        fig = _figure(figsize=(5, 1.4))
        fig.text(0.5, 0.5, f"{title}: no mistakes" if title else "no mistakes", ha="center",
                 va="center")  # fmt: skip
        return fig
    cols = max(sum(1 for it in items if it["true"] == r) for r in rows)
    side = 1.35
    fig = _figure(figsize=(1.6 + side * cols, 0.6 + (side + 0.25) * len(rows)))
    axes = np.atleast_2d(fig.subplots(len(rows), cols, squeeze=False))
    for i, r in enumerate(rows):
        mine = [(img, it) for img, it in zip(images, items, strict=True) if it["true"] == r]
        for j in range(cols):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            if j >= len(mine):
                ax.axis("off")
                continue
            img, it = mine[j]
            pixels = np.asarray(img).transpose(1, 2, 0)
            if pixels.shape[2] == 1:
                ax.imshow(pixels[..., 0], cmap="gray", vmin=0, vmax=255)
            else:
                ax.imshow(pixels)
            p = it["probability"]
            shown = f"{p:.2f}" if p < 0.995 else ">0.99"  # never printed as a certain 1.00
            ax.set_title(f"→ {classes[it['predicted']]} ({shown})", fontsize=8, color="C3")
            if j == 0:
                ax.set_ylabel(f"true {classes[r]}", fontsize=9)
    fig.suptitle(
        (f"{title}: " if title else "") + "most confident mistakes per true class "
        "(above each: the class predicted, its probability)",
        fontsize=10,
    )
    return fig


def disagreement_figure(
    images: list[np.ndarray],
    items: list[dict[str, Any]],
    names: tuple[str, str],
    thresholds: tuple[float, float],
    positive: str,
    title: str = "",
):
    """The images two models decide differently, most different probabilities first: above
    each, the true class and each model's p(positive) with its verdict (+ positive, - not)."""
    if not items:
        fig = _figure(figsize=(5, 1.4))
        fig.text(0.5, 0.5, "the two models agree on every image", ha="center", va="center")
        return fig
    cols = min(6, len(items))
    rows = -(-len(items) // cols)
    side = 1.6
    fig = _figure(figsize=(0.4 + side * cols, 0.7 + (side + 0.45) * rows))
    axes = np.atleast_2d(fig.subplots(rows, cols, squeeze=False))
    for j, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if j >= len(items):
            ax.axis("off")
            continue
        pixels = np.asarray(images[j]).transpose(1, 2, 0)
        if pixels.shape[2] == 1:
            ax.imshow(pixels[..., 0], cmap="gray", vmin=0, vmax=255)
        else:
            ax.imshow(pixels)
        it = items[j]
        marks = [f"{'AB'[k]} {it['ab'[k]]:.2f}{'+' if it['ab'[k]] >= thresholds[k] else '-'}"
                 for k in range(2)]  # fmt: skip
        ax.set_title(f"true {it['true']}\n" + "  ".join(marks), fontsize=7)
    fig.suptitle((f"{title}\n" if title else "") + f"A = {names[0]}, B = {names[1]}: "
                 f"p({positive}), + above the model's threshold", fontsize=9)  # fmt: skip
    return fig


def colorbar_figure(label: str, cmap: str = "jet"):
    """A horizontal colour bar from 0 to 1 for a heatmap overlay (Grad-CAM's, in `jet`)."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    fig = _figure(figsize=(4.2, 1.1))
    ax = fig.subplots()
    bar = fig.colorbar(ScalarMappable(Normalize(0, 1), cmap), cax=ax, orientation="horizontal")
    bar.set_ticks([0, 0.5, 1], labels=["none", "some", "strongest"])
    bar.ax.tick_params(labelsize=8)
    bar.set_label(label, fontsize=8)
    return fig
