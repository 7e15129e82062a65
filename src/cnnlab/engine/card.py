"""The model card of a binary (screening) bundle: what it was trained on, how it was split,
how well it does with intervals, how it decides, what it is for and what it is not for."""

from __future__ import annotations

from typing import Any

import yaml

from cnnlab.engine.medical import INTERVAL_KEYS


def _metric_lines(m: dict[str, Any]) -> list[str]:
    lines = ["| metric | value | 95% CI (bootstrap) |", "|---|---|---|"]
    for key in INTERVAL_KEYS:
        if key in m:
            lo, hi = m.get(f"{key}_ci", [float("nan")] * 2)
            lines.append(f"| {key} | {m[key]:.4f} | {lo:.4f} - {hi:.4f} |")
    if "ece" in m:
        lines.append(f"| ECE (10 bins) | {m['ece']:.4f} | |")
    return lines


def medical_card(
    meta: dict[str, Any], intended_use: str = "", limitations: list[str] | None = None
) -> str:
    """Markdown for card.md, built from bundle.json alone (so re-writing it needs no retraining)."""
    d, m, data = meta.get("decision", {}), meta.get("metrics", {}), meta.get("data", {})
    pre, recipe = meta["preprocess"], meta.get("recipe", {})
    train = meta.get("training", {})
    rd = recipe.get("data", {})
    lines = [
        f"# {meta['name']}: {meta['classes'][0]} vs {meta['classes'][1]}",
        "",
        "**Not for clinical use.** A research and teaching model: it has not been validated "
        "prospectively, on other hospitals' images, or by any regulator.",
        "",
        "## Model",
        f"- `{meta['model']['name']}` ({meta['params']:,} parameters), arguments "
        f"`{meta['model'].get('args', {})}`",
        f"- input: {pre['channels']} channel(s), {pre['size'][0]}x{pre['size'][1]}, resize "
        f"{pre['resize']}, mean {pre['mean']}, std {pre['std']}",
        f"- output: p({meta['classes'][1]}), calibrated by temperature {d.get('temperature', 1.0):.3f}",
        "",
        "## Data and splits",
        f"- source: `{data.get('source', '?')}` ({data.get('format', '?')})",
    ]
    for split, counts in data.get("counts", {}).items():
        lines.append(f"- {split}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    lines.append(
        f"- validation: {data.get('val_origin', '?')}, {rd.get('val_fraction', 0):.0%} of the "
        f"training folder, stratified, grouped by `{rd.get('group_by', 'none')}` (seed "
        f"{rd.get('split_seed', 0)}): no patient has images on both sides"
        if rd.get("group_by") == "patient"
        else f"- validation: {data.get('val_origin', '?')}, {rd.get('val_fraction', 0):.0%}, "
        "stratified (not grouped by patient: figures may be optimistic)"
    )
    lines.append(f"- class imbalance: {train.get('loss_weighting', 'none')}")
    lines += ["", f"## Metrics on the validation split ({m.get('n', 0)} images)", ""]
    lines += _metric_lines(m) if m else ["(no validation split)"]
    if "confusion_matrix" in m:
        cm = m["confusion_matrix"]
        lines += [
            "",
            f"Confusion matrix (rows true, columns predicted; {', '.join(meta['classes'])}): `{cm}`",
        ]
    lines += [
        "",
        "## Decision rule",
        f"- predict **{d.get('positive_class', meta['classes'][1])}** when the calibrated "
        f"probability >= **{d.get('threshold', 0.5):.4f}**",
        f"- threshold policy: `{d.get('policy', 'fixed')}` ({d.get('policy_text', '')}); "
        f"temperature scaling {'fitted on the validation split' if d.get('temperature', 1.0) != 1.0 else 'off'}",
        "",
        "## Intended use",
        intended_use
        or "Teaching and research: showing how a transfer-learned CNN screens paediatric chest "
        "X-rays for pneumonia, and how such a model is judged (intervals, calibration, threshold).",
        "",
        "## Limitations",
    ]
    lines += [f"- {x}" for x in (limitations or default_limitations(meta))]
    lines += [
        "",
        "## How to retrain it",
        f"Training took {train.get('seconds', 0):.0f} s ({train.get('runtime', '')}).",
        "",
        "```bash",
        meta.get("command") or "cnnlab train <recipe>",
        "```",
        "",
        "The resolved recipe:",
        "",
        "```yaml",
        yaml.safe_dump(recipe, sort_keys=False).rstrip(),
        "```",
        "",
    ]
    return "\n".join(lines)


def default_limitations(meta: dict[str, Any]) -> list[str]:
    return [
        "Trained on one public data set (Kermany et al. 2018: paediatric patients aged 1-5 from "
        "one hospital in Guangzhou); adults, other hospitals and other scanners are untested.",
        "The images were downsized to 224x224 JPEG; full-resolution or DICOM inputs are resized "
        "the same way, which may lose fine detail.",
        "The official test set is known to differ from a random split of the training folder "
        "(specificity drops there): the validation figures above are optimistic for new sites.",
        "Two labels only: it cannot tell bacterial from viral pneumonia or find other findings.",
        "The threshold was chosen on validation images from the same source; check it locally "
        "before relying on its sensitivity.",
    ]
