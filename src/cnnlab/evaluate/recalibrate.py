"""Site recalibration of binary bundles: `cnnlab recalibrate` refits temperature and threshold
on a site's labelled images, the way deployed screening models are checked at each new hospital,
and writes a new bundle whose decision came from the site's images. Its figures come from
cross-validation (each image judged by a rule fitted on the other folds, patients kept
together), so the figures it reports are never the figures the rule was fitted on.

The network's weights are never changed here.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnlab.bundle.catalog import META
from cnnlab.bundle.check import read_meta
from cnnlab.bundle.loading import load_bundle
from cnnlab.bundle.save import write_meta
from cnnlab.bundle.seal import CARD, WEIGHTS, bundle_files
from cnnlab.config import DecisionConfig
from cnnlab.errors import CnnlabError
from cnnlab.evaluate.external import SiteScores, external_block, now, site_scores
from cnnlab.evaluate.leakage import refuse_training_overlap
from cnnlab.fileio import umask

log = logging.getLogger("cnnlab")


def _folds(scores: SiteScores, k: int, seed: int) -> list[np.ndarray]:
    """Held-out index sets: stratified by class, one patient's images always in one fold."""
    from sklearn.model_selection import StratifiedGroupKFold

    y = scores.labels.numpy()
    k = max(2, min(k, int(min((y == 0).sum(), (y == 1).sum()))))
    split = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    return [test for _, test in split.split(np.zeros(len(y)), y, scores.groups)]


def cross_validated(
    scores: SiteScores,
    classes: list[str],
    cfg: DecisionConfig,
    folds: int = 5,
    seed: int = 0,
) -> tuple[dict[str, Any], int]:
    """The site figures of a rule refitted on the site, each image judged by the rule fitted on
    the folds without it: (report, folds used). When they miss the policy's target, the report's
    `missed_target` says by how much and what reaching it would cost."""
    from cnnlab.evaluate.calibration import fit_decision
    from cnnlab.evaluate.medical import probability_report
    from cnnlab.runtime.decision import probabilities

    held = _folds(scores, folds, seed)
    n = len(scores.labels)
    p = np.zeros(n)
    thresholds = np.zeros(n)
    for test in held:
        train = np.setdiff1d(np.arange(n), test)
        rule = fit_decision(scores.logits[train], scores.labels[train], classes, cfg)
        p[test] = probabilities(scores.logits[test], rule["temperature"])[:, 1].numpy()
        thresholds[test] = rule["threshold"]
    report = probability_report(
        p, scores.labels.numpy(), classes, thresholds, prevalence=cfg.prevalence
    )
    from sklearn.metrics import confusion_matrix

    pred = (p >= thresholds).astype(int)
    report["confusion_matrix"] = confusion_matrix(
        scores.labels.numpy(), pred, labels=[0, 1]
    ).tolist()
    report["n"] = n
    report["threshold_range"] = [float(thresholds.min()), float(thresholds.max())]
    missed = missed_target(report, p, scores.labels.numpy(), cfg)
    if missed:
        report["missed_target"] = missed
    return report, len(held)


def missed_target(
    report: dict[str, Any], p: np.ndarray, y: np.ndarray, cfg: DecisionConfig
) -> dict[str, Any] | None:
    """When the cross-validated figure falls short of the policy's target: the shortfall, and
    the one threshold on the held-out probabilities that reaches the target, with what it costs
    (specificity for a sensitivity target; sensitivity for a PPV one). None when it is met."""
    from cnnlab.evaluate.calibration import at_prevalence, rates_by_threshold

    if cfg.policy == "target_sensitivity":
        metric, target, other = "sensitivity", cfg.target_sensitivity, "specificity"
    elif cfg.policy == "target_ppv":
        metric, target, other = "ppv_at_prevalence", cfg.target_ppv, "sensitivity"
    else:
        return None
    got = report[metric]
    if not got < target:
        return None
    cuts, sens, spec = rates_by_threshold(p, y)
    if metric == "sensitivity":
        ok = np.flatnonzero(sens >= target)
        k = int(ok[-1]) if len(ok) else None  # the highest threshold that still reaches it
    else:
        ppv = np.nan_to_num(at_prevalence(sens, spec, cfg.prevalence)[0], nan=0.0)
        ok = np.flatnonzero(ppv >= target)
        k = int(ok[0]) if len(ok) else None  # the most sensitive one that reaches it
    out: dict[str, Any] = {"metric": metric, "target": float(target), "cross_validated": got,
                           "short_by": float(target - got), "ci": report[f"{metric}_ci"],
                           "cost_metric": other, "cost_from": report[other]}  # fmt: skip
    if k is not None:
        out["threshold"] = float(cuts[k])
        out["cost_to"] = float(spec[k] if other == "specificity" else sens[k])
    return out


@dataclass
class Recalibration:
    out: Path
    before: dict[str, Any]  # the site's figures under the bundle's own rule
    after: dict[str, Any]  # cross-validated figures of the refitted rule
    decision: dict[str, Any]  # the refitted rule (fitted on every site image)
    folds: int


def refit(
    scores: SiteScores,
    classes: list[str],
    current: dict[str, Any],
    cfg: DecisionConfig,
    folds: int = 5,
    seed: int = 0,
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], int]:
    """(new rule fitted on every site image, site figures under the `current` rule, cross-validated
    site figures of the refitted rule, folds used); PPV and NPV at `cfg.prevalence` in both."""
    from cnnlab.evaluate.calibration import fit_decision
    from cnnlab.evaluate.scores import full_report

    if cfg.policy == "fixed":
        raise CnnlabError(
            "recalibration fits a threshold: use --policy target_sensitivity, target_ppv or youden"
        )
    if cfg.policy == "target_ppv" and cfg.prevalence is None:
        raise CnnlabError("--target-ppv needs --prevalence: a PPV holds at one prevalence")
    before = full_report(scores.logits, scores.labels, classes, float(current.get("threshold", 0.5)),
                         float(current.get("temperature", 1.0)), True,
                         prevalence=cfg.prevalence)  # fmt: skip
    after, used = cross_validated(scores, classes, cfg, folds, seed)
    decision = fit_decision(scores.logits, scores.labels, classes, cfg)
    site = f"{scores.name} ({len(scores.labels)} images)"
    decision.update(
        fitted_on="site", data=scores.name, n=len(scores.labels), fitted=now(),
        policy_text=decision["policy_text"].replace("the validation split", f"the site sample {site}"),
    )  # fmt: skip
    return decision, before, after, used


def recalibrate(
    bundle_ref: str | Path,
    data_path: str,
    out: str | Path,
    cfg: DecisionConfig,
    folds: int = 5,
    name: str | None = None,
    seed: int = 0,
    command: str = "",
) -> Recalibration:
    """Refit temperature and threshold on a site's labelled images; write a new bundle that
    records both rules, the data each came from, and the site's cross-validated figures.
    `command` (the CLI line) is added to the commands that made the bundle."""
    from cnnlab.evaluate.scores import full_report

    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise CnnlabError(
            f"--out {out} already exists; give a new folder for the recalibrated bundle"
        )
    bundle = load_bundle(bundle_ref)
    scores = site_scores(bundle, data_path, name)
    checked = refuse_training_overlap(bundle, scores.paths, data_path)
    for line in checked["warnings"]:
        log.warning("%s", line)
    decision, before, after, used = refit(scores, bundle.classes, bundle.decision, cfg, folds, seed)

    meta = read_meta(bundle.path, META)
    meta["decision_history"] = [*meta.get("decision_history", []), dict(bundle.decision)]
    meta["decision"] = decision
    meta["name"] = out.name
    meta["recalibrated_from"] = bundle.name
    meta["command"] = "\n".join(c for c in (meta.get("command", ""), command) if c)
    val = meta.get("validation_scores")
    if val:  # the validation figures again, at the new rule (same images, same logits)
        logits = torch.tensor(val["logits"], dtype=torch.float32).view(-1, 1)
        refreshed = full_report(logits, torch.tensor(val["labels"]), bundle.classes,
                                decision["threshold"], decision["temperature"], True)  # fmt: skip
        meta["metrics"] = {**meta.get("metrics", {}), **refreshed}
    block = external_block(after, scores.name, bundle.classes,
                           "the rule refitted on this site, cross-validated", used)  # fmt: skip
    meta["external"] = [b for b in meta.get("external", []) if b.get("name") != scores.name]
    meta["external"].append(block)
    _write_bundle_copy(bundle.path, out, meta)
    return Recalibration(out, before, after, decision, used)


def _write_bundle_copy(src: Path, out: Path, meta: dict[str, Any]) -> None:
    """The recalibrated bundle, built in a temporary folder beside `out` and renamed into place:
    an interrupted run leaves no half-written bundle."""
    from cnnlab.bundle.seal import seal_bundle
    from cnnlab.report.card import write_card

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        tmp.chmod(0o777 & ~umask())  # a bundle folder like any other (mkdtemp's is owner-only)
        shutil.copyfile(src / WEIGHTS, tmp / WEIGHTS)  # (not copy2: the mode of a new file)
        for kept in bundle_files(meta):  # the OOD check and training hashes travel too
            if kept not in (META, CARD, WEIGHTS):
                shutil.copyfile(src / kept, tmp / kept)
        write_meta(tmp, meta)
        write_card(tmp, meta)
        seal_bundle(tmp)
        if out.exists():
            out.rmdir()  # empty (checked above)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
