"""The model bundle: one folder with weights, preprocessing, classes, decision rule and card.

    model.safetensors   weights (never a pickle)
    bundle.json         model name + arguments, preprocessing, classes, threshold/temperature,
                        metrics, the resolved recipe, versions, the `ood` check's cut-off
    card.md             the model card, for people
    ood.safetensors     the out-of-distribution check's means and covariance (when fitted)

`load_bundle` is the only way the CLI, the app and the API load a model, so all of them
preprocess and decide exactly as training did; it checks everything first
(`cnnlab.bundle_check`), and `check_bundle` reports those checks one by one (`cnnlab check`).
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from cnnlab.bundle_check import (
    FORMAT,
    VERSION,
    Check,
    check_files,
    check_head,
    check_meta,
    check_weights,
    describe_fields,
    files_record,
    read_meta,
)
from cnnlab.catalog import META, resolve_bundle, shipped_bundles  # noqa: F401 (re-exported)
from cnnlab.data.preprocess import Preprocess
from cnnlab.errors import CnnlabError
from cnnlab.fileio import (
    atomic_path,
    atomic_write_text,
    data_name,
    finite_values,
    shareable_command,
)
from cnnlab.runtime.decision import Decision
from cnnlab.runtime.device import choose_runtime
from cnnlab.runtime.inference import predict_logits
from cnnlab.runtime.ood import OOD_FILE, OODCheck, load_ood, logits_and_features

WEIGHTS, CARD = "model.safetensors", "card.md"


@dataclass
class Bundle:
    model: nn.Module
    preprocess: Preprocess
    classes: list[str]
    meta: dict[str, Any]
    path: Path | None = None
    runtime: Any = field(default=None, repr=False)  # cnnlab.runtime.device.Runtime, set on load
    backend: Any = field(default=None, repr=False)  # None = PyTorch; see cnnlab.deploy.backends
    ood: OODCheck | None = field(default=None, repr=False)  # None: a bundle without the check

    @property
    def name(self) -> str:
        return str(
            self.meta.get("name") or (self.path.name if self.path else self.meta["model"]["name"])
        )

    @property
    def binary(self) -> bool:
        return self.meta.get("class_mode") == "binary"

    @property
    def decision(self) -> Decision:
        """The decision rule (temperature, threshold, policy); reads as bundle.json's block too."""
        return Decision.from_record(self.meta.get("decision"), self.binary)

    @property
    def threshold(self) -> float | None:
        """Decision threshold on p(positive class) for binary bundles; None for argmax."""
        return self.decision.threshold

    @property
    def temperature(self) -> float:
        return self.decision.temperature

    @property
    def card(self) -> str:
        if self.path and (self.path / CARD).is_file():
            return (self.path / CARD).read_text()
        return ""

    def predict_proba(self, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """uint8 (N, C, H, W) at the bundle's size -> calibrated class probabilities (N, K)."""
        if self.backend is not None:  # e.g. ONNX Runtime: same uint8 input, same logits
            logits = self.backend.logits(images, batch_size)
        else:
            logits = predict_logits(self.model, images, self.preprocess, self.runtime, batch_size)
        return self.decision.probabilities(logits)

    def predict_checked(
        self, images: torch.Tensor, batch_size: int = 256
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(calibrated probabilities (N, K), out-of-distribution distances (N,) or None when the
        bundle has no check). With PyTorch, one forward pass gives both."""
        if self.ood is None:
            return self.predict_proba(images, batch_size), None
        logits, feats = logits_and_features(self.model, images, self.preprocess, self.runtime,
                                            self.ood.layers, batch_size)  # fmt: skip
        if self.backend is not None:  # the backend's own logits; the features come from PyTorch
            logits = self.backend.logits(images, batch_size)
        return self.decision.probabilities(logits), self.ood.distances(feats)


# ----------------------------------------------------------------------------- save


def versions() -> dict[str, str]:
    import torchvision

    from cnnlab import __version__

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
        "decision": decision
        or (
            {"threshold": 0.5, "temperature": 1.0, "policy": "0.5"}
            if class_mode == "binary"
            else {"temperature": 1.0}
        ),
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
    return out


def meta_text(meta: dict[str, Any]) -> str:
    """bundle.json's text: strict JSON (an undefined figure, NaN, is written null)."""
    plain = json.loads(json.dumps(meta, default=_json_default))
    return json.dumps(finite_values(plain), indent=2, allow_nan=False) + "\n"


def write_meta(path: Path, meta: dict[str, Any]) -> None:
    atomic_write_text(path / META, meta_text(meta))


def update_bundle_meta(path: Path, **changes: Any) -> dict[str, Any]:
    meta = json.loads((path / META).read_text())
    meta.update(changes)
    write_meta(path, meta)
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


# ----------------------------------------------------------------------------- load


def load_bundle(ref: str | Path, device: str = "cpu", precision: str = "fp32") -> Bundle:
    """Load and check a bundle (`cnnlab.bundle_check`); anything missing, mismatched or out of
    range is a CnnlabError that names it."""
    steps = _load_steps(resolve_bundle(ref), device, precision)
    try:
        while True:
            next(steps)
    except StopIteration as done:
        return done.value


def check_bundle(ref: str | Path) -> tuple[list[Check], Bundle | None]:
    """Every check `load_bundle` makes, each reported (what it found), up to the first that
    fails: what `cnnlab check BUNDLE` prints. Returns the bundle when all passed."""
    checks: list[Check] = []
    try:
        path = resolve_bundle(ref)
        steps = _load_steps(path, "cpu", "fp32")
        while True:
            name, detail = next(steps)
            checks.append(Check(name, True, detail))
    except StopIteration as done:
        return checks, done.value
    except CnnlabError as e:
        names = [c.name for c in checks]
        failed = next((n for n in CHECK_NAMES if n not in names), "bundle")
        checks.append(Check(failed, False, str(e)))
    return checks, None


CHECK_NAMES = ("bundle.json", "fields", "files", "architecture", "weights", "head")


def _load_steps(
    path: Path, device: str, precision: str
) -> Generator[tuple[str, str], None, Bundle]:
    """The load, one checked step at a time; each yields (check name, what it found)."""
    from cnnlab.models import create_model, get_entry

    meta = read_meta(path, META)
    yield "bundle.json", f"{path / META}: {FORMAT} version {meta.get('version', VERSION)}"
    pre, decision = check_meta(meta, path / META)
    meta = finite_values(meta)  # an undefined figure (NaN) reaches no JSON answer: null
    yield "fields", describe_fields(meta, pre, decision)
    yield "files", check_files(path, meta, (WEIGHTS,))
    name = meta["model"]["name"]
    args = dict(meta["model"].get("args", {}))
    try:
        if "pretrained" in get_entry(name).arguments():
            args["pretrained"] = False  # the bundle's own weights replace any download
        model = create_model(name, **args)
    except CnnlabError as e:
        raise CnnlabError(f"{path / META}: model: {e}") from None
    except (TypeError, ValueError, RuntimeError) as e:
        raise CnnlabError(f"{path / META}: model.args do not build {name}: {e}") from None
    weights = path / WEIGHTS
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError) as e:
        raise CnnlabError(f"{weights} is not a readable safetensors file: {e}") from None
    check_state(model, state, weights)
    yield "architecture", f"{name}: {len(state)} tensors match the model's"
    yield "weights", check_weights(state, weights)
    model.load_state_dict(state)
    yield "head", check_head(model, meta, pre, path / META)
    rt = choose_runtime(device, precision, "auto")
    model.to(rt.device)
    if rt.channels_last:
        model.to(memory_format=torch.channels_last)
    model.eval()
    return Bundle(
        model, pre, list(meta["classes"]), meta, path, rt, ood=load_ood(path, meta.get("ood"))
    )


def check_state(model: nn.Module, state: dict[str, torch.Tensor], where: Path) -> None:
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing (e.g. {missing[0]})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
    if wrong:
        problems.append(f"{len(wrong)} with the wrong shape (e.g. {wrong[0]}, file vs model)")
    if problems:
        raise CnnlabError(
            f"weights in {where} do not match the model in bundle.json: " + "; ".join(problems)
        )


def copy_bundle(src: Path, dst: Path) -> Path:
    """Copy the bundle files (used to ship a trained bundle inside the package): the three
    always, the out-of-distribution check and the mistakes gallery when the run has them."""
    dst.mkdir(parents=True, exist_ok=True)
    for name in (WEIGHTS, META, CARD, OOD_FILE, "mistakes.png"):
        if name in (WEIGHTS, META, CARD) or (src / name).is_file():
            shutil.copy2(src / name, dst / name)
    return dst
