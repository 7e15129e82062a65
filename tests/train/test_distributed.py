"""Data-parallel training on CPU (gloo): 2 processes with the same global batch train the
same model as 1 process, rank 0 alone writes, and an interrupted 2-process run resumes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from cnnlab.config import recipe_from_dict
from cnnlab.data import prepare_data
from cnnlab.net import free_port
from cnnlab.train.callbacks import Callback
from cnnlab.train.fit import fit
from cnnlab.train.run import build_model, train_recipe

RECIPE = {
    "name": "tiny-ddp",
    "data": {"source": "", "val_fraction": 0.2},
    "model": {"name": "fastnet", "args": {"widths": [4, 8]}},
    "train": {"epochs": 2, "batch_size": 64, "optimizer": "sgd", "lr": 0.05, "momentum": 0.9,
              "schedule": "cosine", "threads": 1, "precision": "fp32", "channels_last": "off"},
}  # fmt: skip  # 480 training images: 7 batches of 64 and a last one of 32, split unevenly too


def recipe_for(source):
    raw = yaml.safe_load(yaml.safe_dump(RECIPE))
    raw["data"]["source"] = str(source)
    return recipe_from_dict(raw)


def close(a: dict, b: dict, atol: float = 1e-5) -> float:
    """Largest weight difference; asserts the same keys and every tensor within atol."""
    assert a.keys() == b.keys()
    worst = max(float((a[k].double() - b[k].double()).abs().max()) for k in a)
    assert worst <= atol, f"weights differ by {worst}"
    return worst


def test_two_processes_match_one_with_the_same_global_batch(idx_dir, tmp_path):
    recipe_file = tmp_path / "tiny.yaml"
    recipe_file.write_text(yaml.safe_dump(RECIPE))
    one = train_recipe(recipe_for(idx_dir), out_dir=tmp_path / "one", progress=False)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "CNNLAB_DEBUG": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
           "--master_addr=127.0.0.1", f"--master_port={free_port()}",
           "-m", "cnnlab", "train", str(recipe_file), "--data", str(idx_dir),
           "--out", str(tmp_path / "two"), "--no-progress"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("bundle written to") == 1  # rank 0 reports, once
    log = (tmp_path / "two" / "train.log").read_text()
    assert log.count("epoch 2/2") == 1 and "distributed: 2 processes (gloo)" in done.stderr
    history = [
        yaml.safe_load(x) for x in (tmp_path / "two" / "history.jsonl").read_text().splitlines()
    ]
    for a, b in zip(one.result.history, history, strict=True):
        assert a["val_accuracy"] == b["val_accuracy"]
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-5)  # training loss over all ranks
    close(load_file(str(tmp_path / "one" / "model.safetensors")),
          load_file(str(tmp_path / "two" / "model.safetensors")))  # fmt: skip
    meta = yaml.safe_load((tmp_path / "two" / "bundle.json").read_text())
    assert meta["metrics"]["accuracy"] == one.metrics["accuracy"]
    assert not list((tmp_path / "two").glob(".*.tmp"))


class StopAfterFirstEpoch(Callback):
    def on_epoch_end(self, state, row):
        state.stop = True  # after the checkpoint of epoch 1 is written: an interrupted run


def _worker(rank: int, world: int, port: int, source: str, out: str) -> None:
    """One rank: a full run, an interrupted run, and its resumption; rank 0 saves weights."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world))  # fmt: skip
    from cnnlab.train import distributed

    distributed.setup("cpu")
    recipe = recipe_for(source)
    data = prepare_data(recipe.data)
    results = {}
    for name, folder, resume, cbs in (
        ("full", "full", False, None),
        ("interrupted", "cut", False, [StopAfterFirstEpoch()]),
        ("resumed", "cut", True, None),
    ):
        model, _ = build_model(recipe, data)
        result = fit(model, data, recipe, Path(out) / folder, resume=resume, progress=False,
                     callbacks=cbs)  # fmt: skip
        results[name] = ({k: v.clone() for k, v in model.state_dict().items()}, result.history)
    if rank == 0:
        torch.save(results, f"{out}/results.pt")
    distributed.teardown()


def test_two_process_resume_continues_exactly(idx_dir, tmp_path):
    for sub in ("full", "cut"):
        (tmp_path / sub).mkdir()
    torch.multiprocessing.spawn(
        _worker, args=(2, free_port(), str(idx_dir), str(tmp_path)), nprocs=2, join=True
    )
    results = torch.load(tmp_path / "results.pt", weights_only=True)
    full, history = results["full"]
    assert len(results["interrupted"][1]) == 1 and len(results["resumed"][1]) == 2
    close(full, results["resumed"][0], atol=0.0)  # resuming is exact
    assert results["resumed"][1][-1]["val_accuracy"] == history[-1]["val_accuracy"]
    recipe = recipe_for(idx_dir)
    data = prepare_data(recipe.data)
    model, _ = build_model(recipe, data)
    single = fit(model, data, recipe, progress=False)
    close(full, model.state_dict())  # and 2 processes train as 1 does
    assert single.history[-1]["val_accuracy"] == history[-1]["val_accuracy"]
