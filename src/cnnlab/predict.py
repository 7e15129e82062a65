"""Predictions on image files or uploads: the functions behind `cnnlab predict`, the app and the
API (`predict_images`, the one inference path all three take).

Each input is decoded once (`cnnlab.data.intake.decode_batch`) and its prediction keeps the
pixels the model saw and the notes on how they were made, so a page that shows the image,
its Grad-CAM or the notes reads nothing again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path

import torch

from cnnlab.bundle.loading import Bundle
from cnnlab.data.dicom import DicomTags
from cnnlab.data.images import IMAGE_SUFFIXES
from cnnlab.data.intake import Decoded, decode_batch, upload_too_large
from cnnlab.errors import CnnlabError

NON_FINITE = "the model's output is not a number (NaN or infinite) for this image; not classified"


@dataclass
class Prediction:
    source: str
    label: str | None = None
    probability: float | None = None  # calibrated probability of `label`
    top_k: list[dict[str, float | str]] = field(default_factory=list)
    positive_probability: float | None = None  # binary bundles: p(positive class)
    threshold: float | None = None
    error: str | None = None
    notes: list[str] = field(default_factory=list)  # what the reader changed on the way in
    # the bundle's out-of-distribution check (None without one): distance and its cut-off
    ood_distance: float | None = None
    ood_threshold: float | None = None
    # the model's input it was made from: uint8 (C, H, W) at the bundle's size
    pixels: torch.Tensor | None = field(default=None, repr=False, compare=False)
    dicom: DicomTags | None = None  # a DICOM input's identifiers and tags
    refused: str | None = None  # why the bundle does not screen it (its `accepts`): no label

    @property
    def screened(self) -> bool:
        """Whether the model gave it a label (not refused, not unreadable)."""
        return self.refused is None and self.error is None and self.label is not None

    @property
    def out_of_distribution(self) -> bool | None:
        """Whether the input lies beyond the check's cut-off ("does not look like the training
        images"); None when the bundle has no check or the input was not classified."""
        if self.ood_distance is None or self.ood_threshold is None:
            return None
        return self.ood_distance > self.ood_threshold

    def to_dict(self) -> dict:
        """The fields that are set, as JSON values (the pixels stay out)."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "pixels"}
        if self.dicom is not None:
            out["dicom"] = self.dicom.to_dict()
        return {k: v for k, v in out.items() if v is not None and v != []}


def expand_inputs(paths: list[str], recursive: bool = False) -> list[Path]:
    """Files as given; a folder gives the image files directly in it (sorted), and those of its
    subfolders only when `recursive` (a run folder's own plots are not inputs). A missing path,
    or a folder without image files, is an error."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            walk = p.rglob("*") if recursive else p.iterdir()
            found = sorted(f for f in walk if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                deeper = not recursive and any(
                    f.suffix.lower() in IMAGE_SUFFIXES for f in p.rglob("*") if f.is_file()
                )
                hint = " (its subfolders have some: add --recursive)" if deeper else ""
                raise CnnlabError(f"no image files in folder {p}{hint}")
            out.extend(found)
        elif p.is_file():
            out.append(p)
        else:
            raise CnnlabError(f"no such file or folder: {p}")
    return out


def label_probabilities(
    bundle: Bundle, probs: torch.Tensor, top_k: int, distances: torch.Tensor | None = None
) -> list[Prediction]:
    """Turn (N, K) probabilities into labelled predictions with the bundle's decision rule, with
    the out-of-distribution distances (`Bundle.predict_checked`) when the bundle has a check."""
    preds = bundle.decision.predict(probs)
    finite = torch.isfinite(probs).all(1).tolist()
    out = []
    k = max(1, min(top_k, len(bundle.classes)))
    cut = bundle.ood.threshold if bundle.ood is not None and distances is not None else None
    for n, (row, pred, ok) in enumerate(zip(probs, preds.tolist(), finite, strict=True)):
        if not ok:  # never a label made from NaN (it compares false with every threshold)
            out.append(Prediction(source="", error=NON_FINITE))
            continue
        values, idx = row.topk(k)
        out.append(
            Prediction(
                source="",
                label=bundle.classes[pred],
                probability=round(float(row[pred]), 6),
                top_k=[
                    {"label": bundle.classes[i], "probability": round(float(v), 6)}
                    for v, i in zip(values.tolist(), idx.tolist(), strict=True)
                ],  # fmt: skip
                positive_probability=round(float(row[1]), 6) if bundle.binary else None,
                threshold=bundle.threshold,
                ood_distance=round(float(distances[n]), 4) if cut is not None else None,
                ood_threshold=round(cut, 4) if cut is not None else None,
            )
        )
    return out


def predict_images(
    bundle: Bundle,
    images: torch.Tensor,
    names: Sequence[str],
    top_k: int = 3,
    batch_size: int = 256,
) -> list[Prediction]:
    """uint8 (N, C, H, W) images at the bundle's size, decoded once, -> one Prediction each,
    named: its label by the bundle's decision rule, its out-of-distribution distance.

    The one inference path: `predict_sources` (the CLI, the app) and the API's micro-batcher
    call it, so they cannot diverge; every decision any surface makes passes here, the place
    to attach a recorder of decisions."""
    probs, distances = bundle.predict_checked(images, batch_size)
    preds = label_probabilities(bundle, probs, top_k, distances)
    for pred, name in zip(preds, names, strict=True):
        pred.source = name
    return preds


def predict_sources(
    bundle: Bundle,
    sources: list[str | Path | bytes],
    names: list[str] | None = None,
    top_k: int = 3,
    batch_size: int = 64,
) -> list[Prediction]:
    """Read each source with the bundle's preprocessing and predict in batches.

    Unreadable inputs get a Prediction with `error` set; the others are unaffected.
    """
    names = names or [
        str(s) if not isinstance(s, bytes) else f"upload-{i}" for i, s in enumerate(sources)
    ]
    results, ready = triage(bundle, names, decode_batch(sources, bundle.preprocess))
    for start in range(0, len(ready), batch_size):
        chunk = ready[start : start + batch_size]
        images = torch.stack([results[i].pixels for i in chunk])
        found = predict_images(bundle, images, [names[i] for i in chunk], top_k, batch_size)
        settle(results, chunk, found)
    return results


def triage(
    bundle: Bundle, names: Sequence[str], decoded: Sequence[Decoded]
) -> tuple[list[Prediction], list[int]]:
    """A Prediction for each decoded input, final for those that never reach the model (the
    unreadable, and those the bundle's `accepts` refuses by their DICOM tags), and the
    indices of the others, to run through `predict_images` then `settle`."""
    accepts = bundle.accepts
    results, ready = [], []
    for i, (name, d) in enumerate(zip(names, decoded, strict=True)):
        refused = accepts.refusal(d.dicom) if accepts is not None and d.error is None else None
        results.append(Prediction(source=name, error=d.error, notes=d.notes, pixels=d.pixels,
                                  dicom=d.dicom, refused=refused))  # fmt: skip
        if d.error is None and refused is None:
            ready.append(i)
    return results, ready


def settle(results: list[Prediction], indices: Sequence[int], found: Sequence[Prediction]) -> None:
    """Put the model's predictions for `indices` in place, keeping what the decode gave each
    (its notes, pixels and DICOM tags)."""
    for i, pred in zip(indices, found, strict=True):
        pred.notes, pred.pixels, pred.dicom = results[i].notes, results[i].pixels, results[i].dicom
        results[i] = pred


def predict_uploads(
    bundle: Bundle, uploads: list[tuple[str, bytes]], max_mb: float | None = None, top_k: int = 3
) -> list[Prediction]:
    """(name, bytes) uploads in one batch, in order; one over `max_mb` is refused unread."""
    results = [Prediction(source=name) for name, _ in uploads]
    ok = []
    for i, (_, data) in enumerate(uploads):
        results[i].error = upload_too_large(len(data), max_mb) if max_mb is not None else None
        if results[i].error is None:
            ok.append(i)
    found = predict_sources(bundle, [uploads[i][1] for i in ok], [uploads[i][0] for i in ok], top_k)
    for i, pred in zip(ok, found, strict=True):
        results[i] = pred
    return results
