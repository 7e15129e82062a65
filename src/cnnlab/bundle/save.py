"""Writing a bundle: `save_bundle` (weights, bundle.json, card, then the seal) and the small
helpers every command that edits bundle.json uses. Loading and checking: `cnnlab.bundle`."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from safetensors.torch import save_file

from cnnlab.bundle.check import FORMAT, VERSION, check_meta, check_weights, files_record, parse_meta
from cnnlab.bundle.seal import CARD, META, WEIGHTS, seal_bundle
from cnnlab.data.preprocess import Preprocess
from cnnlab.errors import CnnlabError
from cnnlab.fileio import (
    atomic_path,
    atomic_write_text,
    data_name,
    finite_values,
    shareable_command,
)


def versions() -> dict[str, str]:
    import torchvision

    from cnnlab.version import __version__

    out = {
        "cnnlab": __version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
    }
    try:
        import timm

        out["timm"] = timm.__version__
    except ImportError:  # pragma: no cover
        pass
    return out


def save_bundle(
    out_dir: str | Path,
    model: nn.Module,
    model_name: str,
    model_args: dict[str, Any],
    preprocess: Preprocess,
    classes: list[str],
    *,
    class_mode: str = "categorical",
    decision: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    recipe: dict[str, Any] | None = None,
    card: str = "",
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write the three files, each atomically; weights first so bundle.json never points at nothing."""
    out = Path(out_dir)
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "name": out.name,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "model": {"name": model_name, "args": model_args},
        "params": int(sum(p.numel() for p in model.parameters())),
        "preprocess": preprocess.to_dict(),
        "classes": list(classes),
        "class_mode": class_mode,
        "decision": _complete_decision(decision, class_mode == "binary"),
        "metrics": metrics or {},
        "recipe": recipe or {},
        "versions": versions(),
        **(extra or {}),
    }
    check_meta(meta, out / META)  # never write a bundle that would not load
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    check_weights(state, out / WEIGHTS)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / WEIGHTS) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt"})
    meta["files"] = files_record(out, (WEIGHTS,))  # size and sha256, checked at every load
    write_meta(out, meta)
    atomic_write_text(out / CARD, card or default_card(meta))
    seal_bundle(out)  # last: the manifest of every file (an OOD file saved before included)
    return out


def _complete_decision(decision: dict[str, Any] | None, binary: bool) -> dict[str, Any]:
    """The decision block as written: every number a load requires, the defaults where the
    caller gave none (a load never fills them in: a block without them was edited)."""
    if not decision:
        return {"threshold": 0.5, "temperature": 1.0, "policy": "0.5"} if binary else {
            "temperature": 1.0}  # fmt: skip
    complete = {"temperature": 1.0, **({"threshold": 0.5} if binary else {})}
    return {**complete, **decision}


def meta_text(meta: dict[str, Any]) -> str:
    """bundle.json's text: strict JSON (an undefined figure, NaN, is written null)."""
    plain = json.loads(json.dumps(meta, default=_json_default))
    return json.dumps(finite_values(plain), indent=2, allow_nan=False) + "\n"


def write_meta(path: Path, meta: dict[str, Any]) -> None:
    atomic_write_text(path / META, meta_text(meta))


def add_training_hashes(path: str | Path, data: str | Path, **changes: Any) -> dict[str, Any]:
    """Keep in a bundle the fingerprints of the images of `data`, the folder it was trained on
    (for bundles trained before cnnlab kept them), with any other top-level `changes` to
    bundle.json, and re-seal; the weights are not touched. Returns the new `training_hashes`
    record."""
    from cnnlab.data.audit import training_files
    from cnnlab.data.fingerprints import Fingerprint, fingerprint_paths, save_training_hashes

    path = Path(path)
    parse_meta((path / META).read_bytes(), path / META)  # a bundle, before anything is written
    prints = [fp for fp in fingerprint_paths(training_files(data)) if isinstance(fp, Fingerprint)]
    if not prints:
        raise CnnlabError(f"{data} holds no readable images to fingerprint")
    record = save_training_hashes(path, prints, data_name(Path(data).resolve()))
    update_bundle_meta(path, training_hashes=record, **changes)
    return record


def update_bundle_meta(path: Path, **changes: Any) -> dict[str, Any]:
    """Change top-level fields of bundle.json and re-seal."""
    meta = parse_meta((path / META).read_bytes(), path / META)
    meta.update(changes)
    write_meta(path, meta)
    seal_bundle(path)
    return meta


def _json_default(o: Any) -> Any:
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, torch.Tensor):
        return o.tolist()
    if hasattr(o, "item"):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o)}")


def default_card(meta: dict[str, Any]) -> str:
    m = meta.get("metrics", {})
    lines = [
        f"# {meta['name']}",
        "",
        f"Model `{meta['model']['name']}` ({meta['params']:,} parameters), trained with cnnlab "
        f"{meta['versions']['cnnlab']} (torch {meta['versions']['torch']}).",
        "",
        "## Data",
        f"- classes: {', '.join(meta['classes'])}",
        f"- input: {meta['preprocess']['channels']} x {meta['preprocess']['size'][0]} x "
        f"{meta['preprocess']['size'][1]}, resize {meta['preprocess']['resize']}",
    ]
    data = meta.get("data", {})
    if data:
        lines.append(
            f"- source: `{data_name(data.get('source', '?'))}` ({data.get('format')}); "
            f"validation: {data.get('val_origin')}"
        )
        for split, counts in data.get("counts", {}).items():
            lines.append(f"- {split}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    if m:
        lines += ["", "## Metrics (validation split)"]
        for key in ("accuracy", "loss", "macro_f1"):
            if key in m:
                lines.append(f"- {key}: {m[key]:.4f}")
    lines += [
        "",
        "## How it was trained",
        "```",
        shareable_command(meta.get("command", "cnnlab train <recipe>")),
        "```",
        "",
    ]
    return "\n".join(lines)
