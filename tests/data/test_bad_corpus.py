"""The one corpus of bad files through `cnnlab predict`, `cnnlab audit` and training's folder
loader: the same decode path gives the same reason everywhere; links that loop, FIFOs, a 10 GB
sparse file and a name that is not UTF-8 are reported, never a crash or exit 1."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from cnnlab.cli import main
from cnnlab.data import load_source
from tests.corpus import good_bytes, implausible_bytes, write_file_corpus
from tests.serve.conftest import make_bundle


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNLAB_DATA", str(tmp_path / "cache"))
    monkeypatch.setenv("CNNLAB_MAX_FILE_MB", "256")  # restored after: main() sets it


@pytest.fixture
def corpus(tmp_path) -> tuple[Path, dict[str, str]]:
    root = tmp_path / "data"
    expected = write_file_corpus(root / "mixed")
    for name, (data, _) in implausible_bytes().items():
        (root / "mixed" / name).write_bytes(data)
    (root / "clean").mkdir()
    for name, data in good_bytes().items():
        (root / "clean" / name).write_bytes(data)
    os.symlink("..", root / "loop")  # `ln -s .. loop` beside the class folders
    return root, expected


def cli(capsys, *args):
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_predict_and_audit_agree_on_every_bad_file(corpus, tmp_path, capsys):
    root, expected = corpus
    bundle = make_bundle(tmp_path / "digits")
    code, out, err = cli(capsys, "predict", bundle.path, root / "mixed", "--json")
    assert code == 2 and "Traceback" not in err and "internal error" not in err
    rows = {Path(r["file"]).name: r for r in json.loads(out)["predictions"]}
    for name, why in expected.items():
        assert rows[name]["label"] is None and why in rows[name]["error"], (name, rows[name])
    for name, (_, why) in implausible_bytes().items():
        assert rows[name]["label"] is None, name  # no confident answer for a dot, a strip, a blank
        assert rows[name]["error"].startswith("not a usable image") and why in rows[name]["error"]
    for name in good_bytes():
        assert rows[name]["label"] is not None and rows[name]["error"] is None, name
    assert rows["caf\udce9.png"]["label"] is not None  # a name that is not UTF-8 still works
    assert not {"pipe.png", "gone.png", "self.png"} & set(rows)  # not files: not listed

    code, out, err = cli(capsys, "audit", root, "--json")
    assert code == 0, err
    report = json.loads(out)
    reasons = {Path(u["path"]).name: u["reason"] for u in report["unreadable"]}
    for name in expected:  # the same reason as predict's, word for word
        assert reasons[name] == rows[name]["error"], name
    skipped = {Path(s["path"]).name: s["reason"] for s in report["not_images"]}
    assert "symbolic link loop" in skipped["up"] and "symbolic link loop" in skipped["loop"]
    assert "broken symbolic link" in skipped["gone.png"]
    assert "cannot read" in skipped["self.png"] or "broken" in skipped["self.png"]
    assert report["splits"]["train"]["classes"]["clean"] == len(good_bytes())
    code, out, err = cli(capsys, "audit", root)  # the text report prints the odd name too
    assert code == 0 and "d.png: empty file (0 bytes)" in out and "verdict:" in out


def test_training_loader_reports_the_corpus(corpus):
    root, expected = corpus
    loaded = load_source(str(root), image_size=[28, 28], color_mode="grayscale")
    reasons = {Path(p).name: why for p, why in loaded.skipped}
    for name, why in expected.items():
        assert why in reasons[name], name
    assert "symbolic link loop" in reasons["loop"] and "symbolic link loop" in reasons["up"]
    assert loaded.splits["train"].classes == ["clean", "mixed"]


def test_the_file_size_cap_is_configurable(corpus, tmp_path, capsys, monkeypatch):
    root, _ = corpus
    bundle = make_bundle(tmp_path / "digits")
    image = root / "clean" / "plain.png"
    code, _, err = cli(capsys, "--max-file-mb", "0.0001", "predict", bundle.path, image)
    assert code == 2 and "over the 104 bytes limit on one file" in err
    monkeypatch.setenv("CNNLAB_MAX_FILE_MB", "256")  # what the option above set
    code, _, err = cli(capsys, "--max-file-mb", "-1", "predict", bundle.path, image)
    assert code == 2 and "--max-file-mb must be a positive number" in err
    code, out, _ = cli(capsys, "predict", bundle.path, image)
    assert code == 0 and "plain.png" in out
