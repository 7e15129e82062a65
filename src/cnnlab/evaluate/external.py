"""External validation of binary bundles: a site's own labelled sample, measured.

A model and a threshold tuned on a split of the training folder rarely carry over to images
acquired elsewhere or later (other exposure, contrast, cropping). `cnnlab evaluate BUNDLE --data
FOLDER --record NAME` measures the bundle as it is on a site's sample and stores an `external`
block (figures with bootstrap intervals, n, counts, the data's name) in bundle.json and the
card. Refitting the rule on that sample is recalibrate.py's.

The network's weights are never changed here.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cnnlab.bundle.catalog import META
from cnnlab.bundle.check import read_meta
from cnnlab.bundle.loading import Bundle
from cnnlab.errors import CnnlabError
from cnnlab.fileio import data_name

STORED = ("n", "counts", "auc", "sensitivity", "specificity", "ppv", "npv", "f1", "accuracy",
          "brier", "ece", "threshold", "threshold_range", "temperature", "confusion_matrix",
          "roc_curve", "prevalence", "ppv_at_prevalence", "npv_at_prevalence")  # fmt: skip
MIN_SITE_PER_CLASS = 10  # a site sample with fewer images of a class cannot fit or check a rule


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


@dataclass
class SiteScores:
    """A labelled folder as the bundle sees it: raw logits, labels, and the patient of each image."""

    logits: torch.Tensor
    labels: torch.Tensor
    groups: list[str]
    name: str
    paths: list[str] | None = None  # each image's file, where it has one


def site_scores(bundle: Bundle, data_path: str, name: str | None = None) -> SiteScores:
    """Logits of every image of a labelled folder (`root/<class>/*`, or its `test/` split)."""
    from cnnlab.data.splits import patient_id
    from cnnlab.evaluate.scores import data_logits, load_split_for

    if not bundle.binary:
        raise CnnlabError(f"{bundle.name} is not a binary model; recalibration fits binary rules")
    data = load_split_for(bundle, data_path, "test")
    y = data.labels
    for k, cls in enumerate(bundle.classes):
        if int((y == k).sum()) < MIN_SITE_PER_CLASS:
            raise CnnlabError(
                f"{data_path} has {int((y == k).sum())} readable {cls} images; a site sample needs "
                f"at least {MIN_SITE_PER_CLASS} of each class to fit or check a decision rule"
            )
    logits = data_logits(bundle, data, 64)
    groups = [patient_id(p) for p in data.paths] if data.paths else [str(i) for i in range(len(y))]
    return SiteScores(logits, y, groups, name or data_name(Path(data_path).resolve()), data.paths)


def external_block(
    report: dict[str, Any], name: str, classes: list[str], rule: str, cross_validated: int = 0
) -> dict[str, Any]:
    """What bundle.json keeps of an evaluation on outside data (no per-image scores)."""
    block = {"name": name, "evaluated": now(), "rule": rule}
    cm = report.get("confusion_matrix")
    if cm is not None:
        report = {
            **report,
            "counts": {c: int(sum(row)) for c, row in zip(classes, cm, strict=True)},
        }
    for key in STORED:
        if key in report:
            block[key] = report[key]
        if f"{key}_ci" in report:
            block[f"{key}_ci"] = report[f"{key}_ci"]
    if cross_validated:
        block["cross_validated_folds"] = cross_validated
    return block


def record_external(path: Path, block: dict[str, Any]) -> dict[str, Any]:
    """Add (or replace, by name) an external block in bundle.json, re-write the card, re-seal."""
    from cnnlab.bundle.seal import seal_bundle
    from cnnlab.report.card import write_card

    meta = read_meta(path, META)
    others = [b for b in meta.get("external", []) if b.get("name") != block["name"]]
    meta["external"] = [*others, block]
    _write_meta(path, meta)
    write_card(path, meta)  # the card's kind (medical or general) follows the bundle
    seal_bundle(path)
    return meta


def record_evaluation(
    bundle: Bundle, report: dict[str, Any], data_path: str, name: str | None = None
) -> str:
    """Store an evaluation of `bundle` at its own rule as external validation; returns its name."""
    from cnnlab.report.card import fitted_on_text

    name = name or data_name(Path(data_path).resolve())
    rule = f"the bundle's own rule (fitted on {fitted_on_text(bundle.decision)})"
    record_external(bundle.path, external_block(report, name, bundle.classes, rule))
    return name


def _write_meta(path: Path, meta: dict[str, Any]) -> None:
    from cnnlab.bundle.save import write_meta

    write_meta(path, meta)
