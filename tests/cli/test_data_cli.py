"""`cnnlab audit` and `cnnlab augment-preview` from the command line."""

from __future__ import annotations

import json
import shutil

import numpy as np
from PIL import Image

from cnnlab.cli import main
from tests.conftest import write_image_folder


def test_audit_json_is_one_object_and_text_has_a_verdict(tmp_path, run_cli, capsys, monkeypatch):
    root = write_image_folder(tmp_path / "d", ["a", "b"], 4, splits=["train", "test"])
    shutil.copy(root / "train" / "a" / "img_0.png", root / "test" / "b" / "leak.png")
    env = {"CNNLAB_DATA": str(tmp_path / "cache")}
    res = run_cli("audit", root, "--json", env=env)
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["exact_duplicates"]["cross_split"] == 1
    assert report["exact_duplicates"]["label_conflicts"] == 1  # a/ in train, b/ in test
    monkeypatch.setenv("CNNLAB_DATA", str(tmp_path / "cache"))
    assert main(["audit", str(root), "--workers", "1"]) == 0
    text = capsys.readouterr().out
    assert "verdict: Fix before trusting any score" in text
    assert "leak: train/a/img_0.png = test/b/leak.png" in text


def test_audit_of_something_else_is_a_clean_error(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("hi")
    assert main(["audit", str(tmp_path / "notes.txt")]) == 2
    err = capsys.readouterr().err
    assert "is not an image folder" in err and "Traceback" not in err


def test_augment_preview_writes_a_grid_of_originals_and_copies(tmp_path, capsys, monkeypatch):
    root = write_image_folder(tmp_path / "d", ["a", "b"], 3, size=40)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "data: {image_size: [40, 40], color_mode: rgb}\n"
        "augment: {rotation_range: 40, zoom_range: 0.2, horizontal_flip: true, fill_mode: wrap,"
        " rescale: 1/255}\n"
    )
    out = tmp_path / "grid.png"
    monkeypatch.setenv("CNNLAB_DATA", str(tmp_path / "cache"))
    args = ["--recipe", str(recipe), "--out", str(out), "--images", "4", "--copies", "3"]
    assert main(["augment-preview", str(root), *args]) == 0
    assert "rotation_range=40" in capsys.readouterr().out
    grid = np.asarray(Image.open(out).convert("RGB")).astype(int)
    assert grid.shape[0] > grid.shape[1] * 0.5  # 4 rows, 1 + 3 columns
    # the first tile is an original image, unchanged
    original = np.asarray(Image.open(root / "a" / "img_0.png").convert("RGB")).astype(int)
    scale = grid.shape[0] // (4 * 40 + 5 * 2) if grid.shape[0] >= 4 * 40 * 2 else 1
    first = grid[2 * scale : (2 + 40) * scale : scale, 2 * scale : (2 + 40) * scale : scale]
    assert np.abs(first - original).max() <= 1
    bad = ["augment-preview", str(root), "--recipe", str(recipe), "--out", str(tmp_path / "g.jpg")]
    assert main(bad) == 2 and ".png" in capsys.readouterr().err
