"""`--resume` trains on with the run's own recipe and data (issue 29: the README's resume line
tried to download MNIST), and on a finished run says so and changes nothing."""

from __future__ import annotations

import shutil

import yaml

from cnnlab.cli import main
from cnnlab.data import download
from cnnlab.train.checkpoint import CHECKPOINT
from tests.conftest import ROOT


def _snapshot(folder):
    return {p.relative_to(folder): (p.stat().st_mtime_ns, p.read_bytes())
            for p in sorted(folder.rglob("*")) if p.is_file()}  # fmt: skip


def test_resume_of_a_finished_run_says_so_and_changes_nothing(tiny_runs, capsys):
    run = tiny_runs[0]
    before = _snapshot(run)
    recipe = str(ROOT / "recipes" / "mnist_fast.yaml")  # names mnist: nothing may download
    assert main(["train", recipe, "--out", str(run), "--resume"]) == 0
    assert "is a finished run" in capsys.readouterr().err
    assert _snapshot(run) == before


def test_resume_reads_the_runs_own_data_not_the_recipes_dataset(tiny_runs, tmp_path, monkeypatch):
    run = tmp_path / "interrupted"
    shutil.copytree(tiny_runs[1], run)
    for name in ("bundle.json", "manifest.json"):  # as if stopped before the bundle was written
        (run / name).unlink(missing_ok=True)
    assert (run / CHECKPOINT).is_file()
    monkeypatch.setattr(download, "fetch", lambda name: (_ for _ in ()).throw(AssertionError(name)))
    # the README's case: the recipe names a dataset (mnist), the run was trained with --data
    raw = yaml.safe_load((run / "recipe.yaml").read_text())
    raw["data"]["source"] = "mnist"
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(raw))
    assert main(["train", str(recipe), "--out", str(run), "--resume", "--no-progress"]) == 0
    assert (run / "bundle.json").is_file()
