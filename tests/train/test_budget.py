"""A training run the machine cannot hold is refused before anything is allocated, naming the
recipe keys that size it; the attacker's `image_size: [4096, 4096]` recipe is one clear error."""

from __future__ import annotations

import subprocess
import sys

import pytest

from cnnlab.config import recipe_from_dict
from cnnlab.errors import CnnlabError
from cnnlab.train import budget
from tests.conftest import ROOT, write_image_folder


def _recipe(size: int, batch: int, **train) -> object:
    return recipe_from_dict({"model": {"name": "cifarnet"}, "data": {"image_size": [size, size]},
                             "train": {"batch_size": batch, **train}})  # fmt: skip


def test_a_step_the_machine_cannot_hold_is_refused_naming_the_keys(monkeypatch):
    monkeypatch.setattr(budget, "memory_bytes", lambda: 8 * 10**9)
    args = {"in_channels": 3, "num_classes": 2, "input_size": [2048, 2048]}
    with pytest.raises(CnnlabError, match=r"train\.batch_size 128 at data\.image_size 2048x2048 "
                       r"needs at least [\d.]+ GB .* this machine has 8\.0 GB"):  # fmt: skip
        budget.check_fits(_recipe(2048, 128), "cifarnet", args, (3, 2048, 2048))
    with pytest.raises(CnnlabError, match=r"train\.eval_batch_size 1024 at data\.image_size"):
        budget.check_fits(_recipe(2048, 1), "cifarnet", args, (3, 2048, 2048))
    small = {**args, "input_size": [32, 32]}
    budget.check_fits(_recipe(32, 512), "cifarnet", small, (3, 32, 32))  # CIFAR-10 fits


def test_the_4096_recipe_is_one_clear_error(tmp_path):
    data = write_image_folder(tmp_path / "d", ["a", "b"], 2, size=8, mode="L")
    recipe = tmp_path / "big.yaml"
    recipe.write_text("model: {name: keras_mnist_cnn}\ndata: {image_size: [4096, 4096], val_fraction: 0.5}\n"
                      "train: {epochs: 1}\n")  # fmt: skip
    env_limit = "import resource; resource.setrlimit(resource.RLIMIT_AS, (12 * 2**30,) * 2); "
    # the child reports its own peak: RUSAGE_CHILDREN would be the largest of every child this
    # pytest process has waited for, earlier tests' included
    peak = ("import atexit; atexit.register(lambda: print('peak-rss-kb', resource.getrusage("
            "resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)); ")  # fmt: skip
    code = (
        env_limit
        + "import sys; "
        + peak
        + "from cnnlab.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, "train", str(recipe), "--data", str(data),
         "--out", str(tmp_path / "run"), "--no-progress"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
        env={"PYTHONPATH": str(ROOT / "src"), "CNNLAB_DATA": str(tmp_path / "cache"),
             "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "data.image_size" in proc.stderr, proc.stderr
    assert not (tmp_path / "run").exists()
    peak_kb = int(proc.stderr.rsplit("peak-rss-kb", 1)[1].split()[0])
    assert peak_kb * 1024 < 4 * 2**30
