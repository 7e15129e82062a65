"""Checkpoints a resume can trust: checksummed, schema-checked, written atomically, also inside
an epoch; a run killed (SIGKILL) at random moments, three times, then resumed gives the same
model bit for bit; a refused --resume changes nothing; a failed run leaves nothing."""

from __future__ import annotations

import hashlib
import io
import json
import multiprocessing as mp
import os
import random
import signal
import time
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from cnnlab.config import recipe_from_dict
from cnnlab.errors import CnnlabError
from cnnlab.train.checkpoint import CHECKPOINT, MAGIC, read_checkpoint, write_checkpoint
from cnnlab.train.run import RunFinished, train_recipe


def tiny(source, **train):
    return recipe_from_dict({
        "name": "tiny",
        "data": {"source": str(source), "val_fraction": 0.2},
        "model": {"name": "fastnet", "args": {"widths": [4, 8]}},
        "augment": {"horizontal_flip": True},
        "train": {"epochs": 3, "batch_size": 16, "optimizer": "sgd", "lr": 0.05,
                  "schedule": "onecycle", "threads": 1, "prune_easy": 0.3,
                  "checkpoint_minutes": 1e-6, **train},  # a checkpoint after every step
    })  # fmt: skip


def snapshot(folder: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.iterdir())
        if p.is_file()
    }


def _child(source: str, out: str, resume: bool) -> None:
    torch.set_num_threads(1)  # forked from a process whose thread pool is not ours to use
    try:
        train_recipe(tiny(source), None, out, resume=resume, progress=False)
    finally:
        os._exit(0)


def test_killed_three_times_then_resumed_is_bit_identical(idx_dir, tmp_path):
    full = train_recipe(tiny(idx_dir), None, tmp_path / "full", progress=False)
    out = tmp_path / "cut"
    rng = random.Random(14)
    ctx = mp.get_context("fork")
    where = []
    for kill in range(3):
        before = (out / CHECKPOINT).stat().st_mtime_ns if (out / CHECKPOINT).exists() else 0
        child = ctx.Process(target=_child, args=(str(idx_dir), str(out), kill > 0))
        child.start()
        deadline = time.time() + 120
        while time.time() < deadline and child.is_alive():  # wait for its first checkpoint
            if (out / CHECKPOINT).exists() and (out / CHECKPOINT).stat().st_mtime_ns != before:
                break
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.25))  # then a random moment
        if child.is_alive():
            os.kill(child.pid, signal.SIGKILL)
        child.join()
        ckpt = read_checkpoint(out / CHECKPOINT)
        where.append((ckpt["epoch"], ckpt["step"]))
    assert any(step > 0 for _, step in where), where  # at least one kill inside an epoch
    assert not (out / "model.safetensors").exists()  # no kill came after the end
    resumed = train_recipe(tiny(idx_dir), None, out, resume=True, progress=False)
    a = load_file(str(tmp_path / "full" / "model.safetensors"))
    b = load_file(str(out / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.result.history[-1]["val_loss"] == full.result.history[-1]["val_loss"]
    assert [r["epoch"] for r in resumed.result.history] == [1, 2, 3]
    assert not list(out.glob(".*.tmp"))  # what a kill mid-write left is cleaned up
    # the training time is the run's, not the last start's
    seconds = json.loads((out / "bundle.json").read_text())["training"]["seconds"]
    assert seconds >= round(resumed.result.train_seconds, 2) > 0  # bundle.json keeps 0.01 s
    with pytest.raises(RunFinished, match="finished run"):  # and a finished run stays as it is
        train_recipe(tiny(idx_dir), None, out, resume=True, progress=False)


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory):
    """A tiny run's folder, its checkpoint newer than its bundle (stopped after a later start):
    a valid checkpoint to tamper with."""
    from tests.conftest import digit_images, write_idx

    tmp = tmp_path_factory.mktemp("ckpt")
    data = tmp / "idx"
    data.mkdir()
    x, y = digit_images(300, 0)
    write_idx(data / "train-images-idx3-ubyte.gz", x)
    write_idx(data / "train-labels-idx1-ubyte.gz", y)
    out = tmp / "run"
    train_recipe(tiny(data, epochs=2, batch_size=64, prune_easy=0.0), None, out, progress=False)
    later = (out / "bundle.json").stat().st_mtime + 10  # as if a later start had been stopped
    os.utime(out / CHECKPOINT, (later, later))  # so --resume reads the checkpoint
    return data, out


def tampered(ckpt: bytes, change) -> bytes:
    """The checkpoint with its payload changed by `change(payload)` and a valid checksum: what
    only a deliberate or buggy writer produces."""
    payload = torch.load(io.BytesIO(ckpt[len(MAGIC) + 65 :]), weights_only=True)
    payload = change(payload)
    buf = io.BytesIO()
    torch.save(payload, buf)
    body = buf.getvalue()
    return MAGIC + hashlib.sha256(body).hexdigest().encode() + b"\n" + body


def flipped(ckpt: bytes) -> bytes:
    data = bytearray(ckpt)
    data[-100] ^= 0x10
    data[len(data) // 2] ^= 0x01
    return bytes(data)


def plain_torch(ckpt: bytes) -> bytes:
    buf = io.BytesIO()
    torch.save({"epoch": 1}, buf)
    return buf.getvalue()


def deflated(ckpt: bytes) -> bytes:
    """The same payload with its zip records compressed (torch.load reads them): a few KB that
    could expand to gigabytes, past any cap on the file's size."""
    body = zipfile.ZipFile(io.BytesIO(ckpt[len(MAGIC) + 65 :]))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for info in body.infolist():
            z.writestr(info.filename, body.read(info))
    return MAGIC + hashlib.sha256(out.getvalue()).hexdigest().encode() + b"\n" + out.getvalue()


def _set(key, value):
    def change(p):
        p[key] = value
        return p

    return change


def _drop(key):
    def change(p):
        del p[key]
        return p

    return change


BAD_CHECKPOINTS = {
    "two flipped bytes": (flipped, "fails its checksum"),
    "truncated": (lambda c: c[: len(c) // 2], "fails its checksum"),
    "a plain torch file": (plain_torch, "or one written by an older cnnlab"),
    "empty": (lambda c: b"", "not a cnnlab checkpoint"),
    "epoch 99": (lambda c: tampered(c, _set("epoch", 99)), "epoch must be a whole number from 0 to 2"),
    "epoch '1'": (lambda c: tampered(c, _set("epoch", "1")), "epoch must be a whole number"),
    "no epoch": (lambda c: tampered(c, _drop("epoch")), "epoch must be a whole number"),
    "not a dict": (lambda c: tampered(c, lambda p: [1, 2]), "not a cnnlab checkpoint"),
    "no model": (lambda c: tampered(c, _drop("model")), "'model' is missing"),
    "step past the end": (lambda c: tampered(c, _set("step", 3)), "step must be a whole number inside"),
    "compressed records": (deflated, "compressed records"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD_CHECKPOINTS))
def test_a_bad_checkpoint_is_refused_and_changes_nothing(interrupted, case, capsys):
    from cnnlab.cli import main

    data, out = interrupted
    good = (out / CHECKPOINT).read_bytes()
    make, message = BAD_CHECKPOINTS[case]
    (out / CHECKPOINT).write_bytes(make(good))
    before = snapshot(out)
    try:
        recipe = out / "recipe.yaml"
        code = main(["train", str(recipe), "--data", str(data), "--out", str(out), "--resume",
                     "--no-progress"])  # fmt: skip
        err = capsys.readouterr().err
        assert code == 2 and message in err and "Traceback" not in err, err
        assert snapshot(out) == before  # recipe.yaml, train.log, bundle: all untouched
    finally:
        (out / CHECKPOINT).write_bytes(good)


def test_a_refused_resume_keeps_the_interrupted_runs_recipe(interrupted, capsys):
    from cnnlab.cli import main

    data, out = interrupted
    before = snapshot(out)
    code = main(["train", str(out / "recipe.yaml"), "--data", str(data), "--out", str(out),
                 "--resume", "--set", "train.lr=0.2"])  # fmt: skip
    assert code == 2 and "train.lr (checkpoint: 0.05, now: 0.2)" in capsys.readouterr().err
    assert snapshot(out) == before


def test_the_checkpoint_round_trips_and_is_written_atomically(tmp_path):
    write_checkpoint(tmp_path / CHECKPOINT, {"epoch": 0, "x": torch.ones(2)})
    assert torch.equal(read_checkpoint(tmp_path / CHECKPOINT)["x"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == [CHECKPOINT]
    with pytest.raises(CnnlabError, match="no checkpoint at"):
        read_checkpoint(tmp_path / "other.pt")


def test_a_10_gb_sparse_checkpoint_is_refused_before_it_is_read(interrupted, capsys):
    """The cap follows the model (its weights times the copies a checkpoint holds, plus the
    one-file cap): a 10 GB file for a tiny model is refused from its size, unread, and
    --max-file-mb raises the cap."""
    import resource

    from cnnlab.cli import main

    data, out = interrupted
    ckpt = out / CHECKPOINT
    good = ckpt.read_bytes()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    try:
        os.truncate(ckpt, 10 * 2**30)  # sparse: no disk used
        code = main(["train", str(out / "recipe.yaml"), "--data", str(data), "--out", str(out),
                     "--resume", "--no-progress"])  # fmt: skip
        err = capsys.readouterr().err
        assert code == 2 and "Traceback" not in err, err
        assert f"--resume: {ckpt}: file is 10,240 MB, over the" in err, err
        assert "--max-file-mb" in err
        assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - peak < 2**30
    finally:
        ckpt.write_bytes(good)


def test_a_large_cap_does_not_reserve_its_size_for_a_small_file(tmp_path):
    """read(limit + 1) makes Python reserve limit + 1 bytes before reading: a checkpoint's cap
    (VGG-16: 3.5 GB) was reserved for every read, however small the file."""
    small = tmp_path / "small.bin"
    small.write_bytes(b"x" * 1000)
    ctx = mp.get_context("fork")
    with ctx.Pool(1) as pool:  # the address-space limit lives and dies with the child
        got = pool.apply(_read_under_limit, (str(small), 2**40))
    assert got == 1000


def _read_under_limit(path: str, limit: int) -> int:
    import resource

    from cnnlab.fileio import read_capped

    resource.setrlimit(resource.RLIMIT_AS, (16 * 2**30, resource.getrlimit(resource.RLIMIT_AS)[1]))
    try:
        return len(read_capped(path, limit))
    except MemoryError:
        return -1
