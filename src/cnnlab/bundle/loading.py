"""Loading a bundle: `load_bundle` runs every check in order (the seal, paths, fields and bounds
in check.py, the weights against the model, a signature when asked), and `check_bundle` reports
those checks one by one (`cnnlab check`). A loaded `Bundle` runs its model with its own
preprocessing, decision rule and out-of-distribution check.

`load_bundle` is the only way the CLI, the app and the API load a model, so all of them
preprocess and decide exactly as training did.
"""

from __future__ import annotations

import contextlib
import functools
import shutil
import threading
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from safetensors import SafetensorError
from safetensors.torch import load

from cnnlab.bundle.accepts import Accepts
from cnnlab.bundle.catalog import META, resolve_bundle, shipped_bundles
from cnnlab.bundle.check import (
    FORMAT,
    META_MAX_BYTES,
    VERSION,
    Check,
    check_bounds,
    check_fields,
    check_files,
    check_head,
    check_weights,
    describe_fields,
    parse_meta,
)
from cnnlab.bundle.seal import (
    CARD,
    MANIFEST,
    SIGNATURE,
    WEIGHTS,
    bundle_files,
    check_listed,
    read_manifest,
    read_sealed,
    sealed_line,
    write_manifest,
)
from cnnlab.data.fingerprints import FingerprintIndex, load_training_hashes
from cnnlab.data.preprocess import Preprocess
from cnnlab.errors import CnnlabError
from cnnlab.fileio import finite_values
from cnnlab.runtime.decision import Decision
from cnnlab.runtime.device import choose_runtime
from cnnlab.runtime.inference import logits_and_features
from cnnlab.runtime.ood import OODCheck, load_ood


@dataclass
class Bundle:
    built: nn.Module | None  # None until `model` is first read (see `build_model` in load_bundle)
    preprocess: Preprocess
    classes: list[str]
    meta: dict[str, Any]
    path: Path | None = None
    runtime: Any = field(default=None, repr=False)  # cnnlab.runtime.device.Runtime, set on load
    backend: Any = field(default=None, repr=False)  # None: PyTorch; else cnnlab.deploy.backends
    ood: OODCheck | None = field(default=None, repr=False)  # None: a bundle without the check
    # its training images' fingerprints (cnnlab.data.fingerprints); None: made before they were kept
    training_hashes: FingerprintIndex | None = field(default=None, repr=False)
    card_text: str | None = field(default=None, repr=False)  # card.md as the load verified it
    sealed: dict[str, Any] = field(default_factory=dict, repr=False)  # manifest of what loaded
    signed: bool = False  # its signature verified at load (`--require-signed`)
    # builds and checks the model on first use; dropped once it has (its tensors with it)
    build: Callable[[], nn.Module] | None = field(default=None, repr=False)
    building: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def model(self) -> nn.Module:
        """The PyTorch model, checked against bundle.json: built at load, or on first use when
        the load was told a kept ONNX graph of these very weights would answer instead (then
        a failed check raises here, from whichever caller first needs the model)."""
        if self.built is None:
            with self.building:  # many sessions may ask at once: one builds, the rest wait
                if self.built is None:
                    if self.build is None:
                        raise CnnlabError(f"{self.name}: no model and nothing to build it from")
                    self.built, self.build = self.build(), None
        return self.built

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
    def accepts(self) -> Accepts | None:
        """The DICOM images it was made for (bundle.json `accepts`); None: any image."""
        return Accepts.from_record(self.meta.get("accepts"))

    @property
    def card(self) -> str:
        """card.md as verified at load (what the app and the API show): never re-read, so a
        file swapped for a link or a 2 GB one later is never served."""
        return self.card_text or ""

    def run(
        self, images: torch.Tensor, batch_size: int = 256, features: bool = True
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """uint8 (N, C, H, W) at the bundle's size -> float32 logits (N, K) and, with `features`
        and an out-of-distribution check, each of its parts' features: the one place a
        bundle's model runs, on ONE engine per batch (PyTorch, or a backend such as ONNX
        Runtime whose graph outputs the features too: `cnnlab.deploy.backends`)."""
        if self.backend is not None:
            return self.backend.run(images, batch_size)
        parts = self.ood.layers if self.ood is not None and features else []
        return logits_and_features(self.model, images, self.preprocess, self.runtime, parts,
                                   batch_size)  # fmt: skip

    def predict_proba(self, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """uint8 (N, C, H, W) at the bundle's size -> calibrated class probabilities (N, K)."""
        return self.decision.probabilities(self.run(images, batch_size, features=False)[0])

    def predict_checked(
        self, images: torch.Tensor, batch_size: int = 256
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(calibrated probabilities (N, K), out-of-distribution distances (N,) or None when the
        bundle has no check), both from one pass of one engine."""
        logits, features = self.run(images, batch_size)
        distances = self.ood.distances(features) if self.ood is not None else None
        return self.decision.probabilities(logits), distances


# ----------------------------------------------------------------------------- load


def load_bundle(
    ref: str | Path,
    device: str = "cpu",
    precision: str = "fp32",
    require_signed: str | Path | None = None,
    build_model: bool = True,
) -> Bundle:
    """Load and check a bundle (its seal, `cnnlab.bundle.check`, and with `require_signed` a
    PEM public key or CA certificate, its signature); anything missing, changed, mismatched or
    out of range is a CnnlabError that names it.

    `build_model=False` leaves the PyTorch model, and the checks of the architecture and head
    against it, to its first use: for an ONNX backend, which may never need it (building a
    timm model imports timm and torchvision, 2 s of a 3 s start). Every other check runs now."""
    steps = _load_steps(resolve_bundle(ref), device, precision, require_signed,
                        build_model=build_model)  # fmt: skip
    try:
        while True:
            next(steps)
    except StopIteration as done:
        return done.value


def check_bundle(
    ref: str | Path, require_signed: str | Path | None = None
) -> tuple[list[Check], Bundle | None]:
    """Every check `load_bundle` makes, each reported (what it found), up to the first that
    fails: what `cnnlab check BUNDLE` prints. Returns the bundle when all passed."""
    checks: list[Check] = []
    try:
        steps = _load_steps(resolve_bundle(ref), "cpu", "fp32", require_signed, report=True)
        while True:
            name, detail = next(steps)
            checks.append(Check(name, True, detail))
    except StopIteration as done:
        return checks, done.value
    except StepFailed as e:
        checks.append(Check(e.step, False, str(e)))
    except CnnlabError as e:
        checks.append(Check("bundle", False, str(e)))
    return checks, None


def seal_reviewed(ref: str | Path) -> tuple[Path, list[str]]:
    """`cnnlab seal`: a person has reviewed a bundle (made before sealing, or changed by hand)
    and trusts it as it is. Every check but the seal runs first: a bundle that would not load
    is not sealed. Returns the folder and what the new seal accepts that the old did not."""
    path = resolve_bundle(ref)
    if path in shipped_bundles().values():
        raise CnnlabError(f"{ref} ships with cnnlab, sealed; it is read-only")
    steps = _load_steps(path, "cpu", "fp32", sealed=False)
    try:
        while True:
            next(steps)
    except StopIteration as done:
        bundle = done.value
    return path, write_manifest(path, bundle.sealed)


class StepFailed(CnnlabError):
    """A load's check failed: which one (`cnnlab check` names it), and why."""

    def __init__(self, step: str, message: str) -> None:
        super().__init__(message)
        self.step = step


@contextlib.contextmanager
def _step(name: str) -> Iterator[None]:
    try:
        yield
    except StepFailed:
        raise
    except CnnlabError as e:
        raise StepFailed(name, str(e)) from None


def _load_steps(
    path: Path,
    device: str,
    precision: str,
    require_signed: str | Path | None = None,
    sealed: bool = True,
    report: bool = False,
    build_model: bool = True,
) -> Generator[tuple[str, str], None, Bundle]:
    """The load, one checked step at a time; each yields (check name, what it found). Every
    file is read once, capped, and the bytes checked against the seal are the bytes used."""
    manifest, manifest_bytes, record, signed = None, b"", {}, None
    if require_signed is not None:  # before anything of the bundle is read
        from cnnlab.bundle.sign import verify_signature

        with _step("signature"):
            signed, said = verify_signature(path, require_signed)
            yield "signature", said
    with _step("seal"):
        if sealed:
            manifest, manifest_bytes = read_manifest(path)
            yield "seal", f"{MANIFEST}: {len(manifest)} files sealed"
        meta_bytes, record[META] = read_sealed(path, META, META_MAX_BYTES, manifest)
        yield "seal", sealed_line(META, record[META], sealed)
    with _step("bundle.json"):
        meta = parse_meta(meta_bytes, path / META)
        yield "bundle.json", f"{path / META}: {FORMAT} version {meta.get('version', VERSION)}"
    with _step("paths"):
        files = bundle_files(meta)
        yield "paths", check_listed(path, files, manifest)
    data = {META: meta_bytes}
    with _step("seal"):
        for name, limit in files.items():
            if name != META:
                data[name], record[name] = read_sealed(path, name, limit, manifest)
                yield "seal", sealed_line(name, record[name], sealed)
    with _step("signature"):
        if signed is not None:
            from cnnlab.bundle.sign import match_signed

            yield "signature", match_signed(path, signed, {MANIFEST: manifest_bytes, **data})
        elif report:
            from cnnlab.bundle.sign import describe_signature

            yield "signature", describe_signature(path)
    with _step("fields"):
        pre, decision = check_fields(meta, path / META)
        meta = finite_values(meta)  # an undefined figure (NaN) reaches no JSON answer: null
        yield "fields", describe_fields(meta, pre, decision)
    with _step("bounds"):
        yield "bounds", check_bounds(meta, pre, decision, path / META)
    with _step("files"):
        yield "files", check_files(path, meta, {WEIGHTS: data[WEIGHTS]})
    rt = choose_runtime(device, precision, "auto")
    model = build = None
    with _step("architecture"):
        state = _read_weights(data.pop(WEIGHTS), path / WEIGHTS)  # the verified bytes, freed
        if build_model:
            model = _create_model(meta, path / META)
            check_state(model, state, path / WEIGHTS)
            name = meta["model"]["name"]
            yield "architecture", f"{name}: {len(state)} tensors match the model's"
    with _step("weights"):
        yield "weights", check_weights(state, path / WEIGHTS)
    if model is not None:
        model.load_state_dict(state)
        with _step("head"):
            yield "head", check_head(model, meta, pre, path / META)
        model = _placed(model, rt)
    else:
        build = functools.partial(_checked_model, meta, pre, path, state, rt)
    ood, hashes = yield from _companions(path, meta, data, report)
    card = data[CARD].decode("utf-8", errors="replace")
    return Bundle(model, pre, list(meta["classes"]), meta, path, rt, ood=ood, card_text=card,
                  sealed=record, signed=signed is not None, training_hashes=hashes,
                  build=build)  # fmt: skip


def _read_weights(data: bytes, where: Path) -> dict[str, torch.Tensor]:
    try:
        return load(data)
    except (SafetensorError, OSError) as e:
        raise CnnlabError(f"{where} is not a readable safetensors file: {e}") from None


def _create_model(meta: dict[str, Any], where: Path) -> nn.Module:
    """bundle.json's model, untrained: its own weights replace any pretrained download."""
    from cnnlab.models import create_model, get_entry

    name, args = meta["model"]["name"], dict(meta["model"].get("args", {}))
    try:
        if "pretrained" in get_entry(name).arguments():
            args["pretrained"] = False
        return create_model(name, **args)
    except CnnlabError as e:
        raise CnnlabError(f"{where}: model: {e}") from None
    except (TypeError, ValueError, RuntimeError) as e:
        raise CnnlabError(f"{where}: model.args do not build {name}: {e}") from None


def _placed(model: nn.Module, rt: Any) -> nn.Module:
    model.to(rt.device)
    if rt.channels_last:
        model.to(memory_format=torch.channels_last)
    return model.eval()


def _checked_model(
    meta: dict[str, Any], pre: Preprocess, path: Path, state: dict[str, torch.Tensor], rt: Any
) -> nn.Module:
    """A load's architecture and head steps, run when the model is first needed."""
    model = _create_model(meta, path / META)
    check_state(model, state, path / WEIGHTS)
    model.load_state_dict(state)
    check_head(model, meta, pre, path / META)
    return _placed(model, rt)


def _companions(
    path: Path, meta: dict, data: dict[str, bytes], report: bool
) -> Generator[tuple[str, str], None, tuple[OODCheck | None, Any]]:
    """The load's steps for the files beside the weights: the OOD check's statistics and the
    training images' fingerprints, each checked like the rest (the bytes the seal verified)."""
    ood = hashes = None
    if meta.get("ood"):
        with _step("ood"):
            ood_name = meta["ood"].get("file", "ood.safetensors")
            ood = load_ood(path, meta["ood"], data.pop(ood_name))
            yield "ood", (f"{ood_name}: {len(ood.parts)} parts, every tensor finite and of the "
                          "shape its record gives")  # fmt: skip
    if meta.get("training_hashes"):
        with _step("hashes"):
            kept = meta["training_hashes"]
            hashes = load_training_hashes(path / kept["file"], kept, data.pop(kept["file"]))
            yield "hashes", (f"{kept['file']}: fingerprints of {len(hashes):,} "
                             f"training images ({kept.get('source', '?')})")  # fmt: skip
    elif report:
        yield "hashes", ("none kept: evaluate and recalibrate cannot check their data "
                         "against this bundle's training images")  # fmt: skip
    return ood, hashes


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
    """Copy a bundle (to ship a trained one inside the package): its sealed files, the seal
    and the signature as they are (the copy verifies as the source does), and the mistakes
    gallery when the run has one. The source's seal is verified first: nothing unsealed ships."""
    load_bundle(src)
    files = list(read_manifest(src)[0])
    dst.mkdir(parents=True, exist_ok=True)
    for name in (*files, MANIFEST, SIGNATURE, "mistakes.png"):
        if name in files or name == MANIFEST or (src / name).is_file():
            shutil.copy2(src / name, dst / name)
    return dst
