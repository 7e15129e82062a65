"""Checkpoints for `--resume`: a schema, a checksum, atomic writes, and points inside an epoch.

The file is a header line, the sha256 of the rest, then `torch.save`'s bytes (read back with
`weights_only=True`: no code runs; read capped by `checkpoint_limit`, and compressed records,
which would inflate past that cap, refused). A flipped byte, a truncated copy, a file from another
program or a hand-edited `epoch: 99` is refused with a message that says which, before
anything in the run folder changes. Besides one at every epoch's end, a checkpoint is written
every `train.checkpoint_minutes` inside an epoch, holding where the epoch stands (the image
order, the random generators, the running sums): a run killed mid-epoch loses minutes, not
the epoch, and continues bit for bit like a run that never stopped (single process).
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from cnnlab.errors import CnnlabError
from cnnlab.fileio import atomic_write_bytes, max_file_bytes, read_capped
from cnnlab.train.callbacks import Callback, FitState

log = logging.getLogger("cnnlab")

CHECKPOINT = "checkpoint.pt"
FORMAT, VERSION = "cnnlab-checkpoint", 2
MAGIC = f"{FORMAT} {VERSION}\n".encode()
DIGEST_BYTES = 64  # sha256 in hex, then a newline
# copies of the weights a checkpoint may hold: the weights, the optimiser's two moments (Adam;
# SGD keeps one), the EMA average and lookahead's slow weights, and one to spare
WEIGHT_COPIES = 6


# ----------------------------------------------------------------------------- the file


def write_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Header, checksum and payload, written atomically (a kill mid-write leaves the previous
    checkpoint and a temporary the next run deletes)."""
    buf = io.BytesIO()
    torch.save({"format": FORMAT, "version": VERSION, **payload}, buf)
    body = buf.getvalue()
    digest = hashlib.sha256(body).hexdigest().encode()
    atomic_write_bytes(path, MAGIC + digest + b"\n" + body)


def checkpoint_limit(model: torch.nn.Module | None) -> int:
    """The most bytes `model`'s checkpoint may have. A checkpoint is legitimately large (VGG-16
    with Adam's moments is about 1.6 GB), so the one-file cap alone would refuse real ones;
    the cap is the one-file cap (`--max-file-mb`, for the history and the epoch's position)
    plus `WEIGHT_COPIES` times the model's own weights and buffers. A file past it (a 10 GB
    sparse file for a small model) is refused from its size, before a byte is read."""
    if model is None:
        return max_file_bytes()
    weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    return max_file_bytes() + WEIGHT_COPIES * weights


def read_checkpoint(path: Path, limit: int | None = None) -> dict[str, Any]:
    """A checkpoint's payload, its checksum verified and its schema checked (`check_schema`
    also needs the recipe: see `check_resumable`); over `limit` bytes (`checkpoint_limit`) it
    is refused unread."""
    if not path.is_file():
        raise CnnlabError(f"--resume: no checkpoint at {path}")
    try:
        data = read_capped(path, checkpoint_limit(None) if limit is None else limit)
    except OSError as e:
        raise CnnlabError(f"--resume: {path}: {e}") from None
    if not data.startswith(MAGIC):
        older = " (or one written by an older cnnlab)" if data[:2] == b"PK" else ""
        raise CnnlabError(f"--resume: {path} is not a cnnlab checkpoint{older}; start a new run")
    start = len(MAGIC) + DIGEST_BYTES + 1
    digest, body = data[len(MAGIC) : start - 1], data[start:]
    if hashlib.sha256(body).hexdigest().encode() != digest:
        raise CnnlabError(
            f"--resume: {path} fails its checksum (damaged or truncated); start a new run"
        )
    if _compressed(body):
        raise CnnlabError(f"--resume: {path} holds compressed records (torch.save never writes "
                          "them; they could expand past any cap); start a new run")  # fmt: skip
    try:
        ckpt = torch.load(io.BytesIO(body), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises several types for a damaged file
        raise CnnlabError(
            f"--resume: cannot read {path} ({type(e).__name__}); start a new run"
        ) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT or ckpt.get("version") != VERSION:
        raise CnnlabError(f"--resume: {path} is not a cnnlab checkpoint; start a new run")
    return ckpt


def _compressed(body: bytes) -> bool:
    """Whether torch.save's zip holds a compressed record: torch.load inflates those, so a few
    KB could become gigabytes after the size cap has passed them."""
    try:
        with zipfile.ZipFile(io.BytesIO(body)) as zf:
            return any(i.compress_type != zipfile.ZIP_STORED for i in zf.infolist())
    except (zipfile.BadZipFile, ValueError, OSError):
        return False  # not a zip: torch.load refuses it below


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_schema(ckpt: dict[str, Any], epochs: int, path: Path) -> None:
    """Every field a resume uses, of the right type and in range for a run of `epochs`."""

    def bad(what: str) -> CnnlabError:
        return CnnlabError(f"--resume: {path}: {what}; start a new run")

    epoch, step = ckpt.get("epoch"), ckpt.get("step", 0)
    if not _int(epoch) or not 0 <= epoch <= epochs:
        raise bad(f"epoch must be a whole number from 0 to {epochs}, got {epoch!r}")
    if not _int(step) or step < 0 or (step > 0 and epoch >= epochs):
        raise bad(f"step must be a whole number inside an unfinished epoch, got {step!r}")
    for key in ("model", "optimizer", "scheduler", "recipe"):
        if not isinstance(ckpt.get(key), dict):
            raise bad(f"'{key}' is missing or not a mapping")
    history = ckpt.get("history")
    if not isinstance(history, list) or len(history) != epoch:
        raise bad(f"history must list the {epoch} finished epochs")
    for key in ("callbacks", "steps"):
        if not isinstance(ckpt.get(key, []), list):
            raise bad(f"'{key}' must be a list")
    seconds = ckpt.get("seconds", 0.0)
    if not isinstance(seconds, float | int) or not math.isfinite(seconds) or seconds < 0:
        raise bad(f"seconds must be a non-negative number, got {seconds!r}")
    position = ckpt.get("position")
    if (step > 0) != isinstance(position, dict):
        raise bad("a checkpoint inside an epoch needs its position (and only such a one)")
    if position is not None:
        for key in ("order", "gen", "rng", "loss_sum", "hits"):
            if not isinstance(position.get(key), torch.Tensor):
                raise bad(f"position.{key} is missing")
        if not _int(position.get("seen")) or position["seen"] < 1:
            raise bad("position.seen must be a positive whole number")


def _first_difference(a, b, where: str = "") -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            diff = _first_difference(a.get(k), b.get(k), f"{where}.{k}" if where else k)
            if diff:
                return diff
        return None
    return None if a == b else f"{where} (checkpoint: {a!r}, now: {b!r})"


def check_resumable(
    out_dir: Path, key: dict, epochs: int, model: torch.nn.Module | None = None
) -> dict[str, Any]:
    """The run folder's checkpoint, verified and written by this recipe (`key`) for `model`;
    called before a resumed run writes anything, so a refused `--resume` changes nothing."""
    path = out_dir / CHECKPOINT
    ckpt = read_checkpoint(path, checkpoint_limit(model))
    check_schema(ckpt, epochs, path)
    diff = _first_difference(ckpt["recipe"], key)
    if diff:
        raise CnnlabError(f"--resume: the recipe differs from the interrupted run's in {diff}; "
                          "resume with the same recipe, or start a new run")  # fmt: skip
    return ckpt


# ----------------------------------------------------------------------------- the callback


class Checkpointer(Callback):
    """`checkpoint.pt` at every epoch's end and every `minutes` inside an epoch (0: only at
    epoch ends): model, optimizer, schedule, stateful callbacks, and inside an epoch where
    it stands (`position`, from fit.train_epoch)."""

    def __init__(
        self, out_dir: Path, callbacks: list[Callback], extra: dict[str, Any], minutes: float = 0
    ) -> None:
        self.path = out_dir / CHECKPOINT
        self.callbacks, self.extra = callbacks, extra
        self.every = minutes * 60.0
        self.last = time.monotonic()

    def _save(self, state: FitState, step: int, position: dict[str, Any] | None) -> None:
        payload = {
            "epoch": state.epoch,
            "step": step,
            "position": position,
            "seconds": float(state.seconds + (position or {}).get("run_seconds", 0.0)),
            "model": state.model.state_dict(),
            "optimizer": state.optimizer.state_dict(),
            "scheduler": state.scheduler.state_dict(),
            "history": state.history,
            "steps": state.steps,
            "callbacks": [cb.state_dict() for cb in self.callbacks],
            **self.extra,
        }
        write_checkpoint(self.path, payload)
        self.last = time.monotonic()

    def on_epoch_end(self, state: FitState, row: dict[str, float]) -> None:
        self._save(state, 0, None)

    def on_step_end(
        self,
        state: FitState,
        row: dict[str, float] | None,
        position: Callable[[], dict[str, Any]] | None,
    ) -> None:
        if position is not None and self.every and time.monotonic() - self.last >= self.every:
            where = position()
            self._save(state, where["step"], where)


def restore(state: FitState, cbs: list[Callback], out_dir: Path | None, key: dict) -> None:
    """Put a run's checkpoint back into `state` and the stateful callbacks (`--resume`)."""
    path = (out_dir or Path(".")) / CHECKPOINT
    ckpt = check_resumable(out_dir or Path("."), key, state.epochs, state.model)
    try:
        state.model.load_state_dict(ckpt["model"])
        state.optimizer.load_state_dict(ckpt["optimizer"])
        state.scheduler.load_state_dict(ckpt["scheduler"])
        for cb, cb_state in zip(cbs, ckpt.get("callbacks", []), strict=False):
            if cb_state:
                cb.load_state_dict(cb_state)
    except (RuntimeError, KeyError, ValueError, TypeError) as e:
        raise CnnlabError(
            f"--resume: checkpoint {path} does not fit this recipe and model ({e})"
        ) from None
    state.epoch = ckpt["epoch"]
    state.history = list(ckpt["history"])
    state.steps = list(ckpt.get("steps", []))
    state.seconds = float(ckpt.get("seconds", 0.0))
    state.position = ckpt.get("position")
    where = (
        f"step {ckpt['step']} of epoch {state.epoch + 1}"
        if state.position
        else f"epoch {state.epoch}"
    )
    log.info("resuming from %s after %s", path, where)
