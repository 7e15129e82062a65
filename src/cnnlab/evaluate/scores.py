"""Evaluation: loss, accuracy, per-class precision/recall/F1 and the confusion matrix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from cnnlab.errors import CnnlabError
from cnnlab.report.figures import confusion_figure, save_figure
from cnnlab.report.metrics import degenerate_warning
from cnnlab.runtime.decision import predictions, probabilities


def loss_from_logits(logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0) -> float:
    z = logits / temperature
    if z.shape[1] == 1:
        return float(F.binary_cross_entropy_with_logits(z[:, 0], labels.float()))
    return float(F.cross_entropy(z, labels))


def classification_report(
    logits: torch.Tensor,
    labels: torch.Tensor,
    classes: list[str],
    threshold: float | None = None,
    temperature: float = 1.0,
) -> dict[str, Any]:
    """The contract's fields: n, loss, accuracy, per_class, confusion_matrix (rows = truth)."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    probs = probabilities(logits, temperature)
    pred = predictions(probs, threshold)
    y, p = labels.numpy(), pred.numpy()
    k = len(classes)
    precision, recall, f1, support = precision_recall_fscore_support(
        y, p, labels=np.arange(k), zero_division=0
    )
    cm = confusion_matrix(y, p, labels=np.arange(k))
    return {
        "n": int(len(y)),
        "loss": loss_from_logits(logits, labels, temperature) if len(y) else float("nan"),
        "accuracy": float((y == p).mean()) if len(y) else float("nan"),
        "macro_f1": float(f1.mean()) if k else 0.0,
        "classes": list(classes),
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(classes)
        },
        "confusion_matrix": cm.tolist(),
    }


def full_report(
    logits: torch.Tensor,
    labels: torch.Tensor,
    classes: list[str],
    threshold: float | None,
    temperature: float,
    binary: bool,
    out_dir: Path | None = None,
    title: str = "",
    prevalence: float | None = None,
) -> dict[str, Any]:
    """classification_report, plus the medical fields (evaluate.medical) for binary models, with
    PPV and NPV at a site's `prevalence` when given."""
    report = classification_report(logits, labels, classes, threshold, temperature)
    if binary:
        from cnnlab.evaluate.medical import binary_report

        report.update(binary_report(logits, labels, classes, threshold, temperature, out_dir,
                                    title, prevalence=prevalence))  # fmt: skip
    elif prevalence is not None:
        raise CnnlabError("--prevalence needs a binary model (PPV and NPV of its positive class)")
    return report


def load_split_for(bundle, data_path: str, split: str):
    """The images of `split` at `data_path`, at the bundle's size, labelled in the bundle's class order.

    `test` is read as it is (a folder with only test/<class>/ or only t10k-* IDX files will do);
    `val` and `train` repeat the split the bundle was trained with, from the same seed.
    """
    return load_splits_for(bundle, data_path, (split,))[split]


def load_splits_for(bundle, data_path: str, splits: tuple[str, ...], need_val: bool = True) -> dict:
    """`load_split_for` for several splits at one reading of the data (`val` and `train` come
    from one preparation). Without `need_val`, a bundle trained without a validation split
    gives no `val` entry instead of an error."""
    from cnnlab.data.sources import load_source

    pre = bundle.preprocess
    mode = "grayscale" if pre.channels == 1 else "rgb"
    out, named = {}, {}
    if "test" in splits:
        loaded = load_source(data_path, "test", pre.size, mode, pre.resize)
        out["test"], named["test"] = loaded.splits["test"], loaded.format == "image-folder"
    if {"val", "train"} & set(splits):
        prepared = _prepare_as_trained(bundle, data_path)
        for split in ("val", "train"):
            if split not in splits:
                continue
            data = prepared.val if split == "val" else prepared.train
            if data is None:
                if not need_val:
                    continue
                raise CnnlabError(
                    f"{data_path} gives no validation split for this bundle (val_fraction is 0)"
                )
            out[split], named[split] = data, prepared.format == "image-folder"
    for split, data in out.items():
        out[split] = _as_bundle_classes(bundle, data, data_path, named[split])
    return out


def _prepare_as_trained(bundle, data_path: str):
    """The training data split as the run split it, decoded with the recipe's own settings where
    they give the bundle's input (so the decode cache the run filled is used, not refilled:
    CIFAR-10's recipe decodes at its native 32x32, not 'at 32x32'); else at the bundle's size."""
    from cnnlab.config import DataConfig, recipe_from_dict
    from cnnlab.data.dataset import ImageData
    from cnnlab.data.images import fit_image, match_channels
    from cnnlab.data.prepare import prepare_data

    pre = bundle.preprocess
    raw = dict(bundle.meta.get("recipe", {}).get("data", {}))
    cfg = recipe_from_dict(
        {"data": {k: v for k, v in raw.items() if k in DataConfig.model_fields}}
    ).data
    cfg.source = data_path
    cfg.normalize = "unit"  # the bundle's own mean/std are used; skip recomputing them
    if cfg.image_size is not None and list(cfg.image_size) != list(pre.size):
        cfg.image_size = list(pre.size)
    if cfg.resize != pre.resize:
        cfg.image_size, cfg.resize = list(pre.size), pre.resize
    prepared = prepare_data(cfg)

    def fit(d: ImageData | None) -> ImageData | None:
        if d is None or (d.size == tuple(pre.size) and d.channels == pre.channels):
            return d
        images = match_channels(d.images, pre.channels)
        if tuple(images.shape[-2:]) != tuple(pre.size):
            images = torch.stack([fit_image(im, pre.size, pre.resize) for im in images])
        return ImageData(images, d.labels, d.classes, d.paths)

    prepared.train, prepared.val = fit(prepared.train), fit(prepared.val)
    return prepared


def _as_bundle_classes(bundle, data, data_path: str, named: bool):
    """Labels in the bundle's class order: by name for folders; numbers checked for the others."""

    if named:
        try:
            return data.remap_classes(bundle.classes)
        except ValueError as e:
            raise CnnlabError(
                f"class {e.args[0][0]!r} in {data_path} is not one the model knows ({', '.join(bundle.classes)})"
            ) from None
    if len(data) and int(data.labels.max()) >= len(bundle.classes):
        raise CnnlabError(
            f"{data_path} has labels up to {int(data.labels.max())}; the model knows {len(bundle.classes)} classes"
        )
    return type(data)(data.images, data.labels, list(bundle.classes), data.paths)


def split_logits(bundle, data_path: str, split: str = "test", batch_size: int = 256):
    """(the split's images as the bundle reads them, the model's raw logits on them): the one
    scoring loop behind evaluate, recalibrate and compare."""
    _check_batch_size(batch_size)  # before the data is read
    data = load_split_for(bundle, data_path, split)
    return data, data_logits(bundle, data, batch_size)


def _check_batch_size(batch_size: int) -> None:
    from cnnlab.config import MAX_BATCH

    if not 1 <= batch_size <= MAX_BATCH:  # 0 stepped a range() by 0; a huge one held all at once
        raise CnnlabError(f"--batch-size must be from 1 to {MAX_BATCH:,}, got {batch_size}")


def data_logits(bundle, data, batch_size: int = 256) -> torch.Tensor:
    """The model's raw logits on images read by `load_split_for`."""
    from cnnlab.runtime.inference import predict_logits

    _check_batch_size(batch_size)
    return predict_logits(bundle.model, data.images, bundle.preprocess, bundle.runtime, batch_size)


def evaluate_bundle(
    bundle,
    data_path: str,
    split: str = "test",
    out_dir: Path | None = None,
    batch_size: int = 512,
    prevalence: float | None = None,
    by: str | None = None,
    meta: str | Path | None = None,
) -> dict[str, Any]:
    """Evaluate a loaded bundle on a split of `data_path`, with its own threshold and temperature
    (and for a binary one: PPV/NPV at a site's `prevalence`; figures per group of the DICOM tag
    or `meta` CSV column `by`)."""
    if prevalence is not None and not bundle.binary:
        raise CnnlabError("--prevalence needs a binary model (PPV and NPV of its positive class)")
    if by is not None and not bundle.binary:
        raise CnnlabError("--by needs a binary model (AUC, sensitivity, specificity per group)")
    data, logits = split_logits(bundle, data_path, split, batch_size)
    report = full_report(logits, data.labels, bundle.classes, bundle.threshold, bundle.temperature,
                         bundle.binary, out_dir, f"{split} ({len(data)} images)",
                         prevalence)  # fmt: skip
    report.update({"split": split, "data": str(data_path), "model": bundle.name})
    if bundle.binary:
        report["policy"] = bundle.decision.get("policy", "fixed")
    warning = degenerate_warning(report["confusion_matrix"], bundle.classes, split)
    if warning:
        report["warning"] = warning
    if by is not None:
        from cnnlab.evaluate.subgroups import group_of_each, subgroup_figures

        groups = group_of_each(data.paths, by, meta)
        p = bundle.decision.probabilities(logits)[:, 1].numpy()
        report["subgroups"] = {"field": by, "groups": subgroup_figures(
            p, data.labels.numpy(), bundle.threshold, groups)}  # fmt: skip
    if split == "test":  # val and train are the training folder itself: overlap is by design
        from cnnlab.evaluate.leakage import data_leakage

        names = [bundle.classes[k] for k in data.labels.tolist()]
        report["leakage"] = data_leakage(bundle, data.paths, names)
    if out_dir is not None:
        save_confusion_matrix(report, bundle.classes, Path(out_dir), split)
        probs = bundle.decision.probabilities(logits)
        save_mistakes(Path(out_dir), data, probs, bundle.threshold, bundle.classes,
                      f"{split} ({len(data)} images)")  # fmt: skip
    return report


def confident_mistakes(
    probs: torch.Tensor, labels: torch.Tensor, threshold: float | None, per_class: int = 6
) -> list[dict[str, Any]]:
    """The wrong predictions the model was surest of, at most `per_class` per true class, surest
    first: [{index, true, predicted, probability (of the class predicted)}]."""
    pred = predictions(probs, threshold)
    sure = probs.gather(1, pred[:, None])[:, 0]
    out = []
    for k in range(probs.shape[1]):
        idx = torch.nonzero((labels == k) & (pred != labels)).flatten()
        for i in idx[sure[idx].argsort(descending=True)][:per_class].tolist():
            out.append({"index": i, "true": k, "predicted": int(pred[i]),
                        "probability": round(float(sure[i]), 4)})  # fmt: skip
    return out


def save_mistakes(
    out: Path, data, probs: torch.Tensor, threshold: float | None, classes: list[str], title: str
) -> Path:
    """mistakes.png (the gallery) and mistakes.json (the same images by file, where known)."""
    import json

    from cnnlab.fileio import atomic_write_text
    from cnnlab.report.figures import mistakes_figure

    items = confident_mistakes(probs, data.labels, threshold)
    images = [data.images[it["index"]].numpy() for it in items]
    save_figure(mistakes_figure(images, items, classes, title), out / "mistakes.png")
    rows = [{"file": data.paths[it["index"]] if data.paths else None, "true": classes[it["true"]],
             "predicted": classes[it["predicted"]], "probability": it["probability"]}
            for it in items]  # fmt: skip
    atomic_write_text(out / "mistakes.json", json.dumps(rows, indent=1) + "\n")
    return out / "mistakes.png"


def save_confusion_matrix(
    report: dict[str, Any], classes: list[str], out: Path, split: str
) -> None:
    """confusion_matrix.png of a report, titled with its split, size and accuracy."""
    title = f"{split} ({report['n']} images), accuracy {report['accuracy']:.2%}"
    fig = confusion_figure(report["confusion_matrix"], classes, title)
    save_figure(fig, out / "confusion_matrix.png")
