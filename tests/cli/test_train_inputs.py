"""Recipes and data checked at the door: each bad one is exit 2 with one line naming the key or
the class, before any training, and leaves no run folder; a run that fails later removes what
it wrote; a killed run's temporaries are cleaned at the next start."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cnnlab.cli import main

RECIPE = """
name: tiny
data: {val_fraction: 0.2}
model: {name: fastnet, args: {widths: [4, 8]}}
train: {epochs: 1, batch_size: 64, optimizer: sgd, lr: 0.1, threads: 1}
"""


def cli(capsys, *args):
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def recipe(tmp_path):
    p = tmp_path / "tiny.yaml"
    p.write_text(RECIPE)
    return p


def image_folder(root, counts: dict[str, int]):
    rng = np.random.default_rng(0)
    for name, n in counts.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (28, 28), dtype=np.uint8)).save(
                root / name / f"{i}.png"
            )
    return root


CASES = [
    (["--set", "train.lr=.nan"], "train.lr: expected a finite number, got nan"),
    (["--set", "train.lr=.inf"], "train.lr: expected a finite number, got inf"),
    (["--set", "train.lr=-1"], "train.lr must be positive"),
    (["--set", "train.momentum=1.5"], "train.momentum must be in [0, 1)"),
    (["--set", "train.weight_decay=-0.1"], "train.weight_decay must be >= 0"),
    (["--set", "data.val_fraction=.nan"], "data.val_fraction: expected a finite number"),
    (["--set", "decision.threshold=1"], "decision.threshold must be in (0, 1)"),
    (["--set", "train.checkpoint_minutes=-1"], "train.checkpoint_minutes must be >= 0"),
    (["--set", "augment.rotation_range=.inf"], "augment.rotation_range: expected a finite"),
    (["--set", "data.image_size=[60000,60000]"], "data.image_size 60000x60000 is over the 16.8 MP"),
]


@pytest.mark.parametrize("args, message", CASES, ids=[c[0][1] for c in CASES])
def test_bad_values_are_refused_naming_the_key(recipe, idx_dir, tmp_path, capsys, args, message):
    out = tmp_path / "run"
    code, _, err = cli(capsys, "train", recipe, "--data", idx_dir, "--out", out, *args)
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert not out.exists()


def test_empty_recipe_out_file_one_class_and_an_empty_class(recipe, idx_dir, tmp_path, capsys):
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing here\n")
    code, _, err = cli(capsys, "train", empty, "--data", idx_dir, "--out", tmp_path / "r")
    assert code == 2 and "is empty" in err and not (tmp_path / "r").exists()
    a_file = tmp_path / "hostname"
    a_file.write_text("x\n")
    code, _, err = cli(capsys, "train", recipe, "--data", idx_dir, "--out", a_file)
    assert code == 2 and "is a file" in err and a_file.read_text() == "x\n"
    one = image_folder(tmp_path / "one", {"cats": 12})
    code, _, err = cli(capsys, "train", recipe, "--data", one, "--out", tmp_path / "r")
    assert code == 2 and "has 1 class (cats); a classifier needs at least 2" in err
    two = image_folder(tmp_path / "two", {"cats": 1, "dogs": 1})  # the split takes one of them
    code, _, err = cli(capsys, "train", recipe, "--data", two, "--out", tmp_path / "r")
    assert code == 2 and "no training images for class" in err and "val_fraction" in err
    hollow = image_folder(tmp_path / "hollow", {"cats": 12, "dogs": 0})
    code, _, err = cli(capsys, "train", recipe, "--data", hollow, "--out", tmp_path / "r")
    assert code == 2 and "no training images for class dogs" in err
    assert not (tmp_path / "r").exists()


def test_a_failed_run_leaves_nothing_and_stale_temporaries_go(recipe, idx_dir, tmp_path, capsys):
    out = tmp_path / "run"
    code, _, err = cli(capsys, "train", recipe, "--data", idx_dir, "--out", out, "--no-progress",
                       "--set", "train.lr=1.0e+30")  # fmt: skip
    assert code == 2 and "training diverged" in err
    assert not out.exists()  # no recipe.yaml, train.log, history or checkpoint left behind
    out.mkdir()
    stale = out / ".confusion_matrix.png.k2j4x9ab.tmp"  # what a SIGKILL mid-save leaves
    stale.write_bytes(b"half a png")
    keep = out / "notes.txt"
    keep.write_text("mine")
    code, _, _ = cli(capsys, "train", recipe, "--data", idx_dir, "--out", out, "--no-progress")
    assert code == 0 and not stale.exists() and keep.read_text() == "mine"
    assert (out / "bundle.json").is_file() and not list(out.glob(".*.tmp"))
