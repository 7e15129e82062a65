"""Checking a bundle before anything trusts it: every load (CLI, app, API, export) goes through
these checks, and `cnnlab check BUNDLE` runs them alone and says what each found.

A bundle is input like any other: hand-edited, half-copied, or from someone else. A NaN
threshold, a negative temperature, `std: 0`, NaN weights or a 60000x60000 input size each
gave answers that looked fine and were not. Here each is one clear CnnlabError naming the
field. The weights file's size and sha256 are recorded at save and compared at load
(bundles saved before cnnlab recorded them still load; `cnnlab check` says the hash is absent).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from cnnlab.data.preprocess import Preprocess
from cnnlab.errors import CnnlabError
from cnnlab.fileio import file_digest, read_capped
from cnnlab.runtime.decision import Decision
from cnnlab.strict import strict_json

FORMAT = "cnnlab-bundle"
VERSION = 1
META_MAX_BYTES = 64 * 2**20  # bundle.json holds validation scores: a few MB at most
CLASS_MODES = ("binary", "categorical")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Check:
    """One step of `cnnlab check`: what was checked, whether it passed, what was found."""

    name: str
    ok: bool
    detail: str


def read_meta(path: Path, name: str) -> dict[str, Any]:
    """bundle.json as a mapping (capped in size, a duplicated key refused). NaN and Infinity, which older cnnlab wrote
    for undefined figures, read as floats: `check_meta` refuses them where they matter."""
    where = path / name
    try:
        meta = strict_json(read_capped(where, META_MAX_BYTES), name, nonfinite=True)
    except (OSError, CnnlabError) as e:
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
    """The values bundle.json holds: model, classes, class mode, preprocessing, decision and
    the files record; returns the preprocessing and decision they make."""

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
    try:
        pre = Preprocess.from_dict(meta["preprocess"])
        decision = Decision.from_record(meta.get("decision"), mode == "binary")
    except CnnlabError as e:
        raise CnnlabError(f"{where}: {e}") from None
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


def files_record(path: Path, names: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """{name: {bytes, sha256}} of the files a bundle's integrity rests on (written at save)."""
    return {n: {"bytes": (path / n).stat().st_size, "sha256": file_digest(path / n)} for n in names}


def check_files(path: Path, meta: dict[str, Any], names: tuple[str, ...]) -> str:
    """Each file exists and, when bundle.json records them, has its size and sha256; returns
    what was verified, in words."""
    record = meta.get("files", {})
    said = []
    for name in names:
        f = path / name
        if not f.is_file():
            raise CnnlabError(f"bundle {path} has no {name}; re-save or re-train it")
        size = f.stat().st_size
        if name not in record:
            said.append(f"{name}: {size:,} bytes; no content hash recorded (saved before "
                        "cnnlab recorded one)")  # fmt: skip
            continue
        if size != record[name]["bytes"]:
            raise CnnlabError(
                f"{f} is {size:,} bytes but bundle.json records {record[name]['bytes']:,} "
                "(truncated or replaced); copy the bundle again"
            )
        if file_digest(f) != record[name]["sha256"]:
            raise CnnlabError(
                f"{f} does not match the sha256 bundle.json records (damaged or replaced); "
                "copy the bundle again"
            )
        said.append(f"{name}: {size:,} bytes, sha256 verified")
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
    return (f"model {meta['model']['name']}, {len(meta['classes'])} classes "
            f"({meta.get('class_mode', 'categorical')}), input {pre.channels}x{pre.size[0]}x"
            f"{pre.size[1]} ({pre.resize}), {rule}")  # fmt: skip
