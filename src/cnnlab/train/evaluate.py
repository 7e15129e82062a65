"""Evaluation: loss, accuracy, per-class precision/recall/F1 and the confusion matrix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from cnnlab.report.figures import confusion_figure, save_figure
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
) -> dict[str, Any]:
    """classification_report, plus the medical fields (train.medical) for binary models."""
    report = classification_report(logits, labels, classes, threshold, temperature)
    if binary:
        from cnnlab.train.medical import binary_report

        report.update(
            binary_report(logits, labels, classes, threshold, temperature, out_dir, title)
        )
    return report


def load_split_for(bundle, data_path: str, split: str):
    """The images of `split` at `data_path`, at the bundle's size, labelled in the bundle's class order.

    `test` is read as it is (a folder with only test/<class>/ or only t10k-* IDX files will do);
    `val` and `train` repeat the split the bundle was trained with, from the same seed.
    """
    from cnnlab.config import DataConfig
    from cnnlab.data.prepare import prepare_data
    from cnnlab.data.sources import load_source
    from cnnlab.errors import CnnlabError

    pre = bundle.preprocess
    mode = "grayscale" if pre.channels == 1 else "rgb"
    if split == "test":
        loaded = load_source(data_path, "test", pre.size, mode, pre.resize)
        data = loaded.splits["test"]
        named = loaded.format in ("image-folder",)
    else:
        raw = dict(bundle.meta.get("recipe", {}).get("data", {}))
        cfg = DataConfig(**{k: v for k, v in raw.items() if k in DataConfig.__dataclass_fields__})
        cfg.source, cfg.image_size, cfg.color_mode, cfg.resize = (
            data_path,
            list(pre.size),
            mode,
            pre.resize,
        )
        cfg.normalize = "unit"  # the bundle's own mean/std are used below; skip recomputing them
        prepared = prepare_data(cfg)
        data = prepared.val if split == "val" else prepared.train
        if data is None:
            raise CnnlabError(
                f"{data_path} gives no validation split for this bundle (val_fraction is 0)"
            )
        named = prepared.format == "image-folder"
    if named:
        try:
            data = data.remap_classes(bundle.classes)
        except ValueError as e:
            raise CnnlabError(
                f"class {e.args[0][0]!r} in {data_path} is not one the model knows ({', '.join(bundle.classes)})"
            ) from None
    elif len(data) and int(data.labels.max()) >= len(bundle.classes):
        raise CnnlabError(
            f"{data_path} has labels up to {int(data.labels.max())}; the model knows {len(bundle.classes)} classes"
        )
    else:
        data = type(data)(data.images, data.labels, list(bundle.classes), data.paths)
    return data


def evaluate_bundle(
    bundle, data_path: str, split: str = "test", out_dir: Path | None = None, batch_size: int = 512
) -> dict[str, Any]:
    """Evaluate a loaded bundle on a split of `data_path`, with its own threshold and temperature."""
    from cnnlab.runtime.inference import predict_logits

    data = load_split_for(bundle, data_path, split)
    logits = predict_logits(
        bundle.model, data.images, bundle.preprocess, bundle.runtime, batch_size
    )
    report = full_report(logits, data.labels, bundle.classes, bundle.threshold, bundle.temperature,
                         bundle.binary, out_dir, f"{split} ({len(data)} images)")  # fmt: skip
    report.update({"split": split, "data": str(data_path), "model": bundle.name})
    if bundle.binary:
        report["policy"] = bundle.decision.get("policy", "fixed")
    if out_dir is not None:
        save_confusion_matrix(report, bundle.classes, Path(out_dir), split)
    return report


def save_confusion_matrix(
    report: dict[str, Any], classes: list[str], out: Path, split: str
) -> None:
    """confusion_matrix.png of a report, titled with its split, size and accuracy."""
    title = f"{split} ({report['n']} images), accuracy {report['accuracy']:.2%}"
    fig = confusion_figure(report["confusion_matrix"], classes, title)
    save_figure(fig, out / "confusion_matrix.png")
