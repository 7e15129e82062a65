"""Model cards, built from bundle.json alone: `medical_card` for a binary (screening) bundle
(what it was trained on, how it was split, how well it does with intervals, how it decides,
what it is for and not for), `general_card` for the others; `model_card` picks. Each says
what the run did (the model trained from scratch or transferred, the input size, the class
balance), warns when the model is degenerate, and states its out-of-distribution check."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from cnnlab.fileio import data_name, shareable_command
from cnnlab.report.metrics import INTERVAL_KEYS, PREVALENCE_KEYS, degenerate_warning


def _cell(m: dict[str, Any], key: str) -> str:
    value = m.get(key)
    if not isinstance(value, int | float):
        return ""
    lo, hi = (m.get(f"{key}_ci") or [None, None])[:2]
    at = f" at prevalence {m['prevalence']:g}" if key in PREVALENCE_KEYS else ""
    if isinstance(lo, int | float) and isinstance(hi, int | float):
        return f"{value:.4f} ({lo:.4f} - {hi:.4f}){at}"
    return f"{value:.4f}{at}"


def _metric_lines(columns: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """One row per metric, one column per data set (value and bootstrap 95% CI)."""
    lines = ["| metric | " + " | ".join(title for title, _ in columns) + " |",
             "|---|" + "---|" * len(columns)]  # fmt: skip
    for key in (*INTERVAL_KEYS, "ece", *PREVALENCE_KEYS):
        if any(key in m for _, m in columns):
            lines.append(f"| {key} | " + " | ".join(_cell(m, key) for _, m in columns) + " |")
    return lines


def fitted_on_text(d: dict[str, Any]) -> str:
    """Which images a decision rule was fitted on, in words."""
    where = d.get("fitted_on") or ("val" if d.get("policy", "fixed") != "fixed" else "none")
    if where == "site":
        return f"the site sample `{d.get('data', '?')}` ({d.get('n', '?')} images)"
    if where == "val":
        return "the validation split"
    return "nothing (a fixed threshold)"


def medical_card(
    meta: dict[str, Any], intended_use: str = "", limitations: list[str] | None = None
) -> str:
    """Markdown for card.md, built from bundle.json alone (so re-writing it needs no retraining)."""
    lines = [
        f"# {meta['name']}: {meta['classes'][0]} vs {meta['classes'][1]}",
        "",
        "**Not for clinical use.** A research and teaching model: it has not been validated "
        "prospectively, on other hospitals' images, or by any regulator.",
        *_model_lines(meta),
        *_data_lines(meta),
        *_figure_lines(meta),
        *_decision_lines(meta),
        *_use_lines(meta, intended_use, limitations),
        *_retrain_lines(meta),
    ]
    return "\n".join(lines)


def _model_lines(meta: dict[str, Any]) -> list[str]:
    pre, d, train = meta["preprocess"], meta.get("decision", {}), meta.get("training", {})
    return [
        "",
        "## Model",
        f"- `{meta['model']['name']}` ({meta['params']:,} parameters), arguments "
        f"`{meta['model'].get('args', {})}`",
        f"- input: {pre['channels']} channel(s), {pre['size'][0]}x{pre['size'][1]}, resize "
        f"{pre['resize']}, mean {pre['mean']}, std {pre['std']}",
        f"- output: p({meta['classes'][1]}), calibrated by temperature {d.get('temperature', 1.0):.3f}",
        f"- {how_trained(meta)}",
        *([f"- {train['loss']}"] if train.get("loss") else []),
    ]


def _data_lines(meta: dict[str, Any]) -> list[str]:
    """Where the images came from, each split's counts, how validation was held out."""
    data, rd = meta.get("data", {}), meta.get("recipe", {}).get("data", {})
    lines = ["", "## Data and splits",
             f"- source: `{data_name(data.get('source', '?'))}` ({data.get('format', '?')})"]  # fmt: skip
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
    lines.append(f"- {imbalance_text(data, meta.get('training', {}))}")
    return lines


def _figure_lines(meta: dict[str, Any]) -> list[str]:
    """Validation and external figures side by side with their intervals, and the rule each
    was measured at."""
    d, m = meta.get("decision", {}), meta.get("metrics", {})
    lines = ["", "## Figures", ""]
    warning = degenerate_warning(m.get("confusion_matrix"), meta["classes"])
    if warning:
        lines += [f"**{warning}**", ""]
    columns = []
    if m:
        columns.append((f"validation ({m.get('n', 0)} images)", m))
    for block in meta.get("external", []):
        cv = block.get("cross_validated_folds")
        columns.append((f"external: {block['name']} ({block.get('n', '?')} images"
                        f"{f', {cv}-fold cross-validated' if cv else ''})", block))  # fmt: skip
    if columns:
        lines += _metric_lines(columns)
        lines += ["", "Each figure with its 95% CI (bootstrap over images)."]
        if m:
            at = m.get("threshold", d.get("threshold", 0.5))
            rule = ("the current rule" if at == d.get("threshold", 0.5) else
                    "the replaced rule: the bundle keeps no validation scores to judge again")  # fmt: skip
            lines.append(f"- validation: held out from the training folder, at threshold "
                         f"{at:.4f} ({rule}).")  # fmt: skip
        for block in meta.get("external", []):
            counts = ", ".join(f"{k} {v}" for k, v in block.get("counts", {}).items())
            lines.append(f"- external `{block['name']}` ({counts}; {block.get('evaluated', '')[:10]}): "
                         f"{block.get('rule', '')}, threshold {_threshold_text(block)}.")  # fmt: skip
    else:
        lines.append("(no validation split and no external evaluation)")
    if "confusion_matrix" in m:
        lines += ["", f"Validation confusion matrix (rows true, columns predicted; "
                  f"{', '.join(meta['classes'])}): `{m['confusion_matrix']}`"]  # fmt: skip
    return lines


def _decision_lines(meta: dict[str, Any]) -> list[str]:
    """The rule in force, the rules it replaced, and the out-of-distribution check."""
    d = meta.get("decision", {})
    lines = [
        "",
        "## Decision rule",
        f"- predict **{d.get('positive_class', meta['classes'][1])}** when the calibrated "
        f"probability >= **{d.get('threshold', 0.5):.4f}**",
        f"- fitted on {fitted_on_text(d)}: threshold policy `{d.get('policy', 'fixed')}` "
        f"({d.get('policy_text', '')}); temperature {d.get('temperature', 1.0):.3f}"
        f"{'' if d.get('temperature', 1.0) != 1.0 else ' (no temperature scaling)'}",
    ]
    for old in meta.get("decision_history", []):
        lines.append(f"- replaced: threshold {old.get('threshold', 0.5):.4f}, temperature "
                     f"{old.get('temperature', 1.0):.3f}, fitted on {fitted_on_text(old)}")  # fmt: skip
    return lines + ood_lines(meta)


def _use_lines(meta: dict[str, Any], intended_use: str, limitations: list[str] | None) -> list[str]:
    kind = "transfer-learned CNN" if transferred(meta) else "CNN trained from scratch"
    lines = [
        "",
        "## Intended use",
        intended_use
        or f"Teaching and research: showing how a {kind} tells {meta['classes'][1]} from "
        f"{meta['classes'][0]} in {_data_words(meta)}, and how such a model is judged "
        "(intervals, calibration, threshold).",
        "",
        "## Limitations",
    ]
    return lines + [f"- {x}" for x in (limitations or default_limitations(meta))]


def _retrain_lines(meta: dict[str, Any]) -> list[str]:
    train = meta.get("training", {})
    return [
        "",
        "## How to retrain it",
        f"Training took {train.get('seconds', 0):.0f} s ({train.get('runtime', '')}).",
        "",
        "```bash",
        shareable_command(meta.get("command") or "cnnlab train <recipe>"),
        "```",
        "",
        "The resolved recipe:",
        "",
        "```yaml",
        yaml.safe_dump(shareable_recipe(meta.get("recipe", {})), sort_keys=False).rstrip(),
        "```",
        "",
    ]


def shareable_recipe(recipe: dict[str, Any]) -> dict[str, Any]:
    """The recipe as a card shows it: its data folders by name, never a machine's absolute path
    (bundle.json keeps the full recipe, for retraining on the same machine)."""
    data = dict(recipe.get("data") or {})
    for key in ("source", "external"):
        if isinstance(data.get(key), str) and Path(data[key]).is_absolute():
            data[key] = data_name(data[key])
    return {**recipe, "data": data} if data else recipe


def _threshold_text(block: dict[str, Any]) -> str:
    lo_hi = block.get("threshold_range")
    if lo_hi:
        return f"{lo_hi[0]:.4f} - {lo_hi[1]:.4f} across folds"
    return f"{block.get('threshold', 0.5):.4f}"


def transferred(meta: dict[str, Any]) -> bool:
    """Whether the model started from pretrained weights (a transfer model not built with
    pretrained: false); a brief CNN or a fast net trained from scratch is not."""
    name = str(meta.get("model", {}).get("name", ""))
    args = meta.get("model", {}).get("args") or {}
    raw_args = ((meta.get("recipe") or {}).get("model") or {}).get("args") or {}
    if raw_args.get("pretrained") is False or args.get("pretrained") is False:
        return False
    if "/" in name:  # timm/<name>, torchvision/<name>: their ImageNet weights by default
        return True
    try:
        from cnnlab.models import get_entry

        return get_entry(name).family == "transfer"
    except Exception:  # noqa: BLE001 - an unknown name in an old bundle: say nothing false
        return False


def how_trained(meta: dict[str, Any]) -> str:
    """'trained from scratch' or 'transfer-learned from ImageNet weights (backbone ...)'."""
    if not transferred(meta):
        return "trained from scratch (no pretrained weights)"
    freeze = (meta.get("model", {}).get("args") or {}).get("freeze")
    ft = (meta.get("recipe") or {}).get("finetune") or {}
    how = "transfer-learned from ImageNet weights"
    if freeze == "all" and ft.get("epochs"):
        how += f" (backbone frozen, then fine-tuned from {ft.get('unfreeze', 'all')} for {ft['epochs']} epochs)"
    elif freeze == "all":
        how += " (backbone frozen: only the head trained)"
    return how


def imbalance_text(data: dict[str, Any], training: dict[str, Any]) -> str:
    """'class imbalance: 2.89:1 (PNEUMONIA 3875, NORMAL 1341) in training; loss weighting: none'."""
    counts = (data.get("counts") or {}).get("train") or {}
    weighting = training.get("loss_weighting", "none")
    if len(counts) < 2 or min(counts.values()) <= 0:
        return f"class imbalance: not recorded; loss weighting: {weighting}"
    ordered = sorted(counts.items(), key=lambda kv: -kv[1])
    ratio = ordered[0][1] / ordered[-1][1]
    shown = (", ".join(f"{k} {v}" for k, v in ordered) if len(ordered) <= 3 else
             f"most: {ordered[0][0]} {ordered[0][1]}, fewest: {ordered[-1][0]} {ordered[-1][1]}")  # fmt: skip
    balance = f"{ratio:.2f}:1 ({shown})" if ratio >= 1.05 else f"none ({shown})"
    return f"class imbalance: {balance} in training; loss weighting: {weighting}"


def _data_words(meta: dict[str, Any]) -> str:
    source = data_name((meta.get("data") or {}).get("source", "?"))
    return "paediatric chest X-rays" if "chest_xray" in source else f"images like `{source}`"


def ood_lines(meta: dict[str, Any]) -> list[str]:
    """The out-of-distribution check, in words (none for a bundle without it)."""
    ood = meta.get("ood")
    if not ood:
        return []
    where = "validation" if ood.get("fitted_on") == "val" else "training"
    views = " and ".join(
        f"`{p.get('layer')}` ({'its channel statistics' if p.get('take') == 'stats' else 'its input'}, "
        f"{p.get('features', '?')} wide)"
        for p in ood.get("parts", [])
    )
    return [
        '- an input too far from the training images is reported as "does not look like the '
        'training images", its label still given: the Mahalanobis distance to the nearest class '
        f"mean (one shared covariance) of the features of {views}, each in units of its "
        f"{ood.get('percentile', 99):g}th percentile on the {where} images; flagged beyond "
        f"{ood.get('threshold', 0):.3f} for the larger of them",
    ]


def default_limitations(meta: dict[str, Any]) -> list[str]:
    pre = meta.get("preprocess", {})
    size = "x".join(map(str, pre.get("size", ["?", "?"])))
    source = data_name((meta.get("data") or {}).get("source", "?"))
    origin = (
        "Trained on one public data set (Kermany et al. 2018: paediatric patients aged 1-5 from "
        "one hospital in Guangzhou); adults, other hospitals and other scanners are untested."
        if "chest_xray" in source
        else f"Trained on one data set (`{source}`); images from other sources are untested."
    )
    return [
        origin,
        f"Every input is resized to {size} ({pre.get('resize', 'stretch')}) as in training; "
        "full-resolution or DICOM inputs lose fine detail on the way.",
        "Images acquired elsewhere or later differ from a split of the training folder "
        "(exposure, contrast, cropping): validation figures are optimistic for new sites; the "
        "external figures say how much.",
        "Two labels only: it cannot tell bacterial from viral pneumonia or find other findings."
        if "chest_xray" in source
        else f"Two labels only ({' and '.join(meta['classes'])}): anything else is forced into one.",
        "The threshold was fitted on the site sample named above; at another site, check it "
        "with `cnnlab evaluate` and refit it with `cnnlab recalibrate` on local labelled images."
        if meta.get("decision", {}).get("fitted_on") == "site"
        else "The threshold was chosen on validation images from the same source; check it "
        "locally (`cnnlab evaluate`) and refit it (`cnnlab recalibrate`) before relying on its "
        "sensitivity.",
    ]


def card_without(card: str, titles: tuple[str, ...]) -> str:
    """The card without its '## title...' sections (a title matches by its start, so 'Metrics'
    drops '## Metrics (validation split, 60 images)'): for a page that shows them itself."""
    for title in titles:
        card = re.sub(rf"^##\s+{re.escape(title)}\b.*?(?=^#{{1,2}}\s|\Z)", "", card,
                      flags=re.M | re.S)  # fmt: skip
    return card.strip() + "\n" if card.strip() else ""


def card_section(card: str, title: str) -> str:
    """The text under a '## title' heading of a model card (empty when there is none)."""
    match = re.search(rf"^##\s+{re.escape(title)}\s*$(.*?)(?=^#{{1,2}}\s|\Z)", card, re.M | re.S)
    return match.group(1).strip() if match else ""


def general_card(meta: dict[str, Any]) -> str:
    """The card of a categorical bundle: model, data, validation figures, how it decides."""
    m, data, train = meta.get("metrics", {}), meta.get("data", {}), meta.get("training", {})
    pre, v = meta["preprocess"], meta.get("versions", {})
    lines = [
        f"# {meta['name']}",
        "",
        f"Model `{meta['model']['name']}` ({meta['params']:,} parameters), {how_trained(meta)}; "
        f"trained with cnnlab {v.get('cnnlab', '?')} (torch {v.get('torch', '?')}).",
        "",
        "## Data",
        f"- classes: {', '.join(meta['classes'])}",
        f"- input: {pre['channels']} x {pre['size'][0]} x {pre['size'][1]}, resize {pre['resize']}",
    ]
    if data:
        lines.append(f"- source: `{data_name(data.get('source', '?'))}` ({data.get('format')}); "
                     f"validation: {data.get('val_origin')}")  # fmt: skip
        for split, counts in data.get("counts", {}).items():
            lines.append(f"- {split}: " + ", ".join(f"{k} {n}" for k, n in counts.items()))
        lines.append(f"- {imbalance_text(data, train)}")
    if m:
        lines += ["", f"## Metrics (validation split, {m.get('n', '?')} images)"]
        warning = degenerate_warning(m.get("confusion_matrix"), meta["classes"])
        if warning:
            lines += ["", f"**{warning}**", ""]
        for key, what in (("accuracy", ""), ("macro_f1", ""),
                          ("loss", " (plain cross-entropy, no label smoothing)")):  # fmt: skip
            if isinstance(m.get(key), int | float):
                lines.append(f"- {key}: {m[key]:.4f}{what}")
    if train.get("loss"):
        lines += ["", f"The losses: {train['loss']}."]
    rule = ood_lines(meta)
    lines += ["", "## Decision", "- the most probable class (argmax of the softmax)", *rule]
    if train:
        lines += [
            "",
            f"Training took {train.get('seconds', 0):.0f} s ({train.get('runtime', '')}).",
        ]
    lines += [
        "",
        "## How it was trained",
        "```",
        shareable_command(meta.get("command") or "cnnlab train <recipe>"),
        "```",
        "",
    ]
    return "\n".join(lines)


def model_card(meta: dict[str, Any]) -> str:
    """The card a bundle gets: medical for binary bundles, general for the others."""
    return medical_card(meta) if meta.get("class_mode") == "binary" else general_card(meta)


def write_card(folder: Path, meta: dict[str, Any] | None = None) -> Path:
    """(Re)write a bundle folder's card.md, atomically, from `meta` or its bundle.json: after
    anything that changes what the card says (training, evaluate --record, recalibrate, ood-fit)."""
    from cnnlab.bundle.catalog import META
    from cnnlab.bundle.check import read_meta
    from cnnlab.bundle.seal import CARD
    from cnnlab.fileio import atomic_write_text

    folder = Path(folder)
    if meta is None:
        meta = read_meta(folder, META)
    atomic_write_text(folder / CARD, model_card(meta))
    return folder / CARD
