"""Checking a bundle before anything trusts it: every load (CLI, app, API, export) goes through
these checks, and `cnnlab check BUNDLE` runs them alone and says what each found.

A bundle is input like any other: hand-edited, half-copied, or from someone else. A NaN
threshold, a negative temperature, `std: 0`, NaN weights or a 60000x60000 input size each
gave answers that looked fine and were not. Here each is one clear CnnlabError naming the
field, and every number that decides must lie where training can put it (bounds below). The
files themselves are sealed (`cnnlab.bundle.seal`); bundle.json's own record of the weights'
size and sha256 (`files`) is checked too, where present.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from cnnlab.bundle.accepts import Accepts
from cnnlab.data.preprocess import Preprocess
from cnnlab.errors import CnnlabError
from cnnlab.fileio import MIB, file_digest, read_capped
from cnnlab.runtime.decision import TEMPERATURE_RANGE, THRESHOLD_MARGIN, Decision
from cnnlab.runtime.ood import MAX_FEATURES, TAKES
from cnnlab.strict import strict_json

FORMAT = "cnnlab-bundle"
VERSION = 1
META_MAX_BYTES = 64 * MIB  # bundle.json holds validation scores: a few MB at most
CLASS_MODES = ("binary", "categorical")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")

# Plausibility bounds: where training (calibration, normalisation, the OOD fit) puts each
# number that decides. A value outside was not made by training: refused, the bound named.
THRESHOLD_BOUNDS = (THRESHOLD_MARGIN, 1.0 - THRESHOLD_MARGIN)  # calibration's clamp
MEAN_BOUNDS = (0.0, 1.0)  # a pixel mean on the 0-1 scale
STD_BOUNDS = (1e-3, 1.0)  # "unit" normalisation is 1; under 1e-3 the images are one grey
OOD_THRESHOLD_BOUNDS = (0.0, 100.0)  # scaled: 1 = a part's percentile; 0 from a degenerate model
OOD_SCALE_BOUNDS = (1e-6, 1e6)  # a part's percentile distance (the fit's floor is 1e-6)
OOD_PERCENTILE_BOUNDS = (50.0, 100.0)  # `ood-fit --percentile`: [50, 100)


@dataclass(frozen=True)
class Check:
    """One step of `cnnlab check`: what was checked, whether it passed, what was found."""

    name: str
    ok: bool
    detail: str


def read_meta(path: Path, name: str) -> dict[str, Any]:
    """bundle.json as a mapping (capped in size, a duplicated key refused)."""
    where = path / name
    try:
        return parse_meta(read_capped(where, META_MAX_BYTES), where)
    except OSError as e:
        raise CnnlabError(f"{where} is unreadable: {e}") from None


def parse_meta(data: bytes | str, where: Path) -> dict[str, Any]:
    """bundle.json's bytes as a mapping. NaN and Infinity, which older cnnlab wrote for
    undefined figures, read as floats: `check_meta` refuses them where they matter."""
    if isinstance(data, bytes):
        try:
            data = data.decode()
        except UnicodeDecodeError as e:
            raise CnnlabError(f"{where} is unreadable: not UTF-8 text ({e.reason})") from None
    try:
        meta = strict_json(data, where.name, nonfinite=True)
    except CnnlabError as e:  # not JSON, a duplicated key, too deep
        raise CnnlabError(f"{where} is unreadable: {e}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CnnlabError(f"{where} is not a cnnlab bundle description")
    version = meta.get("version", VERSION)
    if version != VERSION:
        raise CnnlabError(
            f"{where} is bundle format version {version!r}; this cnnlab reads version {VERSION}"
        )
    return meta


def check_meta(meta: dict[str, Any], where: Path) -> tuple[Preprocess, Decision]:
    """Everything `load_bundle` checks in bundle.json's values (`check_fields`, then
    `check_bounds`); `save_bundle` checks the same before writing."""
    pre, decision = check_fields(meta, where)
    check_bounds(meta, pre, decision, where)
    return pre, decision


def check_fields(meta: dict[str, Any], where: Path) -> tuple[Preprocess, Decision]:
    """The values bundle.json holds: model, classes, class mode, preprocessing, decision, the
    out-of-distribution record and the files record, each of its kind; returns the
    preprocessing and decision they make."""

    def bad(field: str, what: str) -> CnnlabError:
        return CnnlabError(f"{where}: {field} {what}")

    for key in ("model", "preprocess", "classes"):
        if key not in meta:
            raise CnnlabError(f"{where} lacks '{key}'")
    model = meta["model"]
    if not isinstance(model, dict) or not isinstance(model.get("name"), str) or not model["name"]:
        raise bad("model", f"must be a mapping with a 'name', got {_short(model)}")
    if not isinstance(model.get("args", {}), dict):
        raise bad("model.args", f"must be a mapping, got {_short(model['args'])}")
    classes = meta["classes"]
    if not isinstance(classes, list) or not all(isinstance(c, str) and c for c in classes):
        raise bad("classes", f"must be a list of class names, got {_short(classes)}")
    if len(classes) < 2:
        raise bad("classes", f"must name at least 2 classes, got {classes}")
    repeated = sorted({c for c in classes if classes.count(c) > 1})
    if repeated:
        raise bad("classes", f"names {', '.join(repeated)} more than once")
    mode = meta.get("class_mode", "categorical")
    if mode not in CLASS_MODES:
        raise bad("class_mode", f"must be binary or categorical, got {_short(mode)}")
    if mode == "binary" and len(classes) != 2:
        raise bad("classes", f"of a binary bundle must be 2, got {len(classes)}")
    _require_decision(meta.get("decision"), mode == "binary", where)
    try:
        pre = Preprocess.from_dict(meta["preprocess"])
        decision = Decision.from_record(meta.get("decision"), mode == "binary")
    except CnnlabError as e:
        raise CnnlabError(f"{where}: {e}") from None
    positive = decision.record.get("positive_class")
    if mode == "binary" and positive is not None and positive != classes[1]:
        raise bad("decision.positive_class", f"{_short(positive)} is not classes[1] "
                  f"({_short(classes[1])}), the class the model's output scores: the class "
                  "names were changed after the rule was fitted")  # fmt: skip
    if meta.get("ood"):
        _check_ood_fields(meta["ood"], bad)
    Accepts.from_record(meta.get("accepts"), where)
    files = meta.get("files", {})
    if not isinstance(files, dict) or not all(
        isinstance(v, dict)
        and isinstance(v.get("bytes"), int)
        and isinstance(v.get("sha256"), str)
        and _SHA256.match(v["sha256"])
        for v in files.values()
    ):
        raise bad("files", "must map file names to {bytes, sha256}")
    return pre, decision


def _require_decision(record: Any, binary: bool, where: Path) -> None:
    """The decision block is written by every save: one without it (or without its numbers)
    was edited, and defaults (0.5, 1.0) would answer silently in its place."""
    needed = ("threshold", "temperature") if binary else ("temperature",)
    if record is None:
        raise CnnlabError(f"{where}: decision is required (its {' and '.join(needed)}); the "
                          "block was removed: copy the bundle again or re-train")  # fmt: skip
    if isinstance(record, dict):
        for key in needed:
            if key not in record:
                raise CnnlabError(f"{where}: decision.{key} is required; the block has only "
                                  f"{', '.join(record) or 'nothing'}")  # fmt: skip


def _check_ood_fields(ood: Any, bad) -> None:
    """The out-of-distribution record's shape: parts naming a layer and a kind of features,
    their widths and ranks, and the numbers `check_bounds` then bounds."""
    if not isinstance(ood, dict):
        raise bad("ood", f"must be a mapping, got {_short(ood)}")
    parts = ood.get("parts")
    if not isinstance(parts, list) or not 1 <= len(parts) <= 8:
        raise bad("ood.parts", f"must be a list of 1 to 8 parts, got {_short(parts)}")
    for i, part in enumerate(parts):
        name = f"ood.parts[{i}]"
        if not isinstance(part, dict):
            raise bad(name, f"must be a mapping, got {_short(part)}")
        if not isinstance(part.get("layer"), str) or not part["layer"]:
            raise bad(f"{name}.layer", f"must name a layer, got {_short(part.get('layer'))}")
        if part.get("take") not in TAKES:
            raise bad(f"{name}.take", f"must be one of {', '.join(TAKES)}, got "
                      f"{_short(part.get('take'))}")  # fmt: skip
        features, rank = part.get("features"), part.get("rank")
        if not _is_int(features) or not 1 <= features <= MAX_FEATURES:
            raise bad(f"{name}.features", f"must be a width within 1-{MAX_FEATURES}, got "
                      f"{_short(features)}")  # fmt: skip
        if not _is_int(rank) or not 1 <= rank <= features:
            raise bad(f"{name}.rank", f"must be within 1-{features} (its features), got "
                      f"{_short(rank)}")  # fmt: skip


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def within(where: Any, field: str, value: Any, bounds: tuple[float, float], why: str,
           upper_open: bool = False) -> float:  # fmt: skip
    """`value` when it is a finite number within `bounds`, else a CnnlabError naming the field,
    the bound and why it is the bound."""
    low, high = bounds
    ok = (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and low <= value
        and (value < high if upper_open else value <= high)
    )
    if not ok:
        raise CnnlabError(f"{where}: {field} {_short(value)} is outside [{low:g}, {high:g}"
                          f"{')' if upper_open else ']'}, {why}")  # fmt: skip
    return float(value)


def check_normalisation(pre: Preprocess, where: Any) -> str:
    """mean/std per channel on the 0-1 scale (training checks its own before it starts)."""
    for i, (m, s) in enumerate(zip(pre.mean, pre.std, strict=True)):
        within(where, f"preprocess.mean[{i}]", m, MEAN_BOUNDS, "a pixel mean on the 0-1 scale")
        within(where, f"preprocess.std[{i}]", s, STD_BOUNDS, "a pixel spread on the 0-1 scale")
    return f"mean {pre.mean}, std {pre.std}"


def check_bounds(meta: dict[str, Any], pre: Preprocess, decision: Decision, where: Path) -> str:
    """Every number that decides lies where training can put it; returns them, in words."""
    said = []
    if decision.threshold is not None:
        within(where, "decision.threshold", decision.threshold, THRESHOLD_BOUNDS,
               "where calibration puts a threshold")  # fmt: skip
        said.append(f"threshold {decision.threshold:g}")
    within(where, "decision.temperature", decision.temperature, TEMPERATURE_RANGE,
           "the temperatures calibration fits")  # fmt: skip
    said.append(f"temperature {decision.temperature:g}")
    said.append(check_normalisation(pre, where))
    ood = meta.get("ood")
    if ood:
        within(where, "ood.threshold", ood.get("threshold"), OOD_THRESHOLD_BOUNDS,
               "where a fitted cut-off lies (1 = each part's percentile distance)")  # fmt: skip
        if "percentile" in ood:
            within(where, "ood.percentile", ood["percentile"], OOD_PERCENTILE_BOUNDS,
                   "the cut-offs ood-fit makes", upper_open=True)  # fmt: skip
        for i, part in enumerate(ood["parts"]):
            within(where, f"ood.parts[{i}].scale", part.get("scale"), OOD_SCALE_BOUNDS,
                   "a distance the fit can measure")  # fmt: skip
        said.append(f"ood cut-off {ood['threshold']:g}, scales "
                    + ", ".join(f"{p['scale']:g}" for p in ood["parts"]))  # fmt: skip
    return "; ".join(said) + ": each within what training produces"


def files_record(path: Path, names: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """{name: {bytes, sha256}} of the files a bundle's integrity rests on (written at save)."""
    return {n: {"bytes": (path / n).stat().st_size, "sha256": file_digest(path / n)} for n in names}


def check_files(path: Path, meta: dict[str, Any], data: dict[str, bytes]) -> str:
    """bundle.json's own record of the weights' size and sha256 (`files`, older than the seal)
    agrees with the bytes the load read; returns what was verified, in words."""
    import hashlib

    record = meta.get("files", {})
    said = []
    for name, content in data.items():
        size = len(content)
        if name not in record:
            said.append(f"{name}: {size:,} bytes; no content hash recorded in bundle.json (the "
                        "seal covers it)")  # fmt: skip
            continue
        if size != record[name]["bytes"]:
            raise CnnlabError(
                f"{path / name} is {size:,} bytes but bundle.json records "
                f"{record[name]['bytes']:,} (truncated or replaced); copy the bundle again"
            )
        if hashlib.sha256(content).hexdigest() != record[name]["sha256"]:
            raise CnnlabError(
                f"{path / name} does not match the sha256 bundle.json records (damaged or "
                "replaced); copy the bundle again"
            )
        said.append(f"{name}: {size:,} bytes, sha256 verified against bundle.json's record")
    return "; ".join(said)


def check_weights(state: dict[str, torch.Tensor], where: Path) -> str:
    """Every floating-point tensor finite: one NaN weight makes every answer NaN."""
    floats = [(k, v) for k, v in state.items() if v.is_floating_point()]
    for key, value in floats:
        if not bool(torch.isfinite(value).all()):
            bad = int((~torch.isfinite(value)).sum())
            raise CnnlabError(f"{where}: weight {key} holds {bad:,} NaN or infinite values")
    return f"{len(floats)} floating-point tensors, all finite"


def head_outputs(model: nn.Module, pre: Preprocess) -> int:
    """How many numbers the model answers with per image (its classifier's outputs)."""
    get = getattr(model, "get_classifier", None)
    head = get() if callable(get) else None
    if isinstance(getattr(head, "out_features", None), int):
        return int(head.out_features)
    weight = getattr(head, "weight", None)
    if isinstance(weight, torch.Tensor) and weight.dim() == 2:
        return int(weight.shape[0])
    was = model.training
    model.eval()
    with torch.no_grad():  # no classifier to read: one blank image through the model
        out = model(torch.zeros(1, pre.channels, *pre.size))
    model.train(was)
    return int(out.shape[-1])


def check_head(model: nn.Module, meta: dict[str, Any], pre: Preprocess, where: Path) -> str:
    """The classes bundle.json names match what the model answers: one output for a binary
    bundle (p(positive)), one per class otherwise."""
    classes, binary = meta["classes"], meta.get("class_mode") == "binary"
    outputs = head_outputs(model, pre)
    expected = 1 if binary else len(classes)
    if outputs != expected:
        kind = "a binary bundle needs 1 output" if binary else f"one per class: {expected}"
        raise CnnlabError(
            f"{where}: classes has {len(classes)} names but the model has {outputs} outputs "
            f"({kind})"
        )
    return f"{outputs} output{'s' if outputs > 1 else ''} for {len(classes)} classes"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def describe_fields(meta: dict[str, Any], pre: Preprocess, decision: Decision) -> str:
    rule = (
        f"threshold {decision.threshold:g}" if decision.threshold is not None else "argmax"
    ) + f", temperature {decision.temperature:g}"
    accepts = Accepts.from_record(meta.get("accepts"))
    said = f"; accepts DICOM {accepts.describe()}" if accepts is not None else ""
    return (f"model {meta['model']['name']}, {len(meta['classes'])} classes "
            f"({meta.get('class_mode', 'categorical')}), input {pre.channels}x{pre.size[0]}x"
            f"{pre.size[1]} ({pre.resize}), {rule}{said}")  # fmt: skip
