"""The CLI end to end on a tiny dataset, and every bad input: exit 2, one line, nothing left behind."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnlab.cli import main
from tests.conftest import digit_images, write_idx

RECIPE = """
name: tiny
data: {source: mnist, val_fraction: 0.2}
model: {name: fastnet, args: {widths: [8, 16]}}
train: {epochs: 2, batch_size: 64, optimizer: sgd, lr: 0.1, schedule: onecycle, threads: 1}
"""


@pytest.fixture
def recipe(tmp_path):
    p = tmp_path / "tiny.yaml"
    p.write_text(RECIPE)
    return p


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny training run through the real `python -m cnnlab` entry point, shared by tests."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    tmp = tmp_path_factory.mktemp("cli")
    data = tmp / "idx"
    data.mkdir()
    for split, n, seed in (("train", 600, 0), ("t10k", 200, 1)):
        x, y = digit_images(n, seed)
        write_idx(data / f"{split}-images-idx3-ubyte.gz", x)
        write_idx(data / f"{split}-labels-idx1-ubyte.gz", y)
    (tmp / "tiny.yaml").write_text(RECIPE)
    out = tmp / "run"
    proc = subprocess.run([sys.executable, "-m", "cnnlab", "train", str(tmp / "tiny.yaml"), "--data", str(data),
                           "--out", str(out), "--no-progress"], capture_output=True, text=True, cwd=ROOT, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "bundle written to" in proc.stdout
    return data, out


def cli(capsys, *args):
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_train_writes_a_complete_run_folder(trained):
    _, out = trained
    for name in ("model.safetensors", "bundle.json", "card.md", "history.jsonl", "curves.png",
                 "confusion_matrix.png", "recipe.yaml", "train.log", "checkpoint.pt"):  # fmt: skip
        assert (out / name).is_file(), name
    meta = json.loads((out / "bundle.json").read_text())
    assert meta["recipe"]["train"]["epochs"] == 2 and meta["data"]["val_origin"] == "held-out"
    assert meta["metrics"]["accuracy"] > 0.8


def test_evaluate_json_is_one_object_on_stdout(trained, capsys):
    data, out = trained
    code, stdout, _ = cli(capsys, "evaluate", out, "--data", data, "--split", "test", "--json")
    assert code == 0
    report = json.loads(stdout)
    for key in ("accuracy", "loss", "n", "per_class", "confusion_matrix"):
        assert key in report
    assert report["n"] == 200 and report["accuracy"] > 0.8
    assert sum(map(sum, report["confusion_matrix"])) == 200


def test_evaluate_val_repeats_the_training_split(trained, capsys):
    data, out = trained
    code, stdout, _ = cli(capsys, "evaluate", out, "--data", data, "--split", "val", "--json")
    assert code == 0
    report = json.loads(stdout)
    meta = json.loads((out / "bundle.json").read_text())
    assert report["n"] == 120 and report["accuracy"] == pytest.approx(meta["metrics"]["accuracy"])


def test_evaluate_only_test_files_present(trained, tmp_path, capsys):
    data, out = trained
    for f in data.glob("t10k-*"):
        (tmp_path / f.name).write_bytes(f.read_bytes())
    code, stdout, _ = cli(capsys, "evaluate", out, "--data", tmp_path, "--json")
    assert code == 0 and json.loads(stdout)["n"] == 200


def test_predict_images_and_folders(trained, tmp_path, capsys):
    _, out = trained
    x, y = digit_images(4, seed=5)
    for i in range(4):
        Image.fromarray(x[i]).save(tmp_path / f"d{i}_{y[i]}.png")
    code, stdout, _ = cli(capsys, "predict", out, tmp_path, "--json", "--top-k", "2")
    assert code == 0
    preds = json.loads(stdout)["predictions"]
    assert len(preds) == 4 and all(len(p["top_k"]) == 2 for p in preds)
    right = sum(p["label"] == Path(p["file"]).stem.split("_")[1] for p in preds)
    assert right >= 3
    code, stdout, _ = cli(capsys, "predict", out, tmp_path / f"d0_{y[0]}.png", "--csv")
    assert code == 0 and stdout.splitlines()[0].startswith("file,label,probability")


def test_predict_bad_image_is_reported(trained, tmp_path, capsys):
    _, out = trained
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 30)
    Image.fromarray(digit_images(1)[0][0]).save(tmp_path / "ok.png")  # a digit: not blank
    code, stdout, err = cli(capsys, "predict", out, tmp_path / "broken.png", tmp_path / "ok.png")
    assert code == 2
    assert "ok.png" in stdout and "broken.png" in err and "Traceback" not in err


def test_models_lists_counts(capsys):
    code, stdout, _ = cli(capsys, "models")
    assert code == 0 and "225,034" in stdout and "138,357,544" in stdout


def test_train_resume_from_the_cli(trained, tmp_path, capsys):
    data, out = trained
    run = tmp_path / "r"
    code, _, _ = cli(capsys, "train", tmp_path.parent / "nope.yaml", "--out", run)
    assert code == 2 and not run.exists()
    (tmp_path / "t.yaml").write_text(RECIPE)
    code, _, err = cli(
        capsys, "train", tmp_path / "t.yaml", "--data", data, "--out", run, "--resume"
    )
    assert code == 2 and "no checkpoint.pt" in err and not run.exists()
    code, _, _ = cli(
        capsys, "train", tmp_path / "t.yaml", "--data", data, "--out", run, "--no-progress"
    )
    assert code == 0
    weights = (run / "model.safetensors").read_bytes()
    code, _, err = cli(capsys, "train", tmp_path / "t.yaml", "--data", data, "--out", run, "--resume",
                       "--set", "train.epochs=3")  # fmt: skip
    # a finished run is said to be one and left alone, whatever is asked (issue 29); a changed
    # recipe on a run that stopped midway is refused by the checkpoint (tests/train/test_checkpoints.py)
    assert code == 0 and "is a finished run" in err
    assert (run / "model.safetensors").read_bytes() == weights
    code, _, _ = cli(
        capsys,
        "train",
        tmp_path / "t.yaml",
        "--data",
        data,
        "--out",
        run,
        "--resume",
        "--no-progress",
    )
    assert code == 0  # nothing left to train: the same bundle again
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1, 2]
    assert (run / "model.safetensors").read_bytes() == weights


@pytest.mark.parametrize(
    "args, message",
    [
        (["--data", "{tmp}/missing"], "data path not found"),
        (["--data", "{bad_idx}"], "wrong magic number"),
        (["--set", "train.epoch=3"], "unknown recipe key train.epoch"),
        (["--set", "train.epochs=three"], "train.epochs: expected an integer"),
        (["--set", "model.name=resnet9000"], "unknown model 'resnet9000'"),
        (["--set", "model.args.depth=3"], "has no argument 'depth'"),
    ],
)
def test_bad_training_inputs(args, message, recipe, tmp_path, capsys, idx_dir):
    bad = tmp_path / "bad_idx"
    bad.mkdir()
    (bad / "train-images-idx3-ubyte").write_bytes(b"\x08\x03" + b"\x00" * 50)
    (bad / "train-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01" + b"\x00" * 8)
    args = [a.format(tmp=tmp_path, bad_idx=bad) for a in args]
    if "--data" not in args:
        args += ["--data", str(idx_dir)]
    out = tmp_path / "run"
    code, stdout, err = cli(capsys, "train", recipe, "--out", out, *args)
    assert code == 2
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()


def test_bad_bundle_and_bad_evaluate_inputs(trained, tmp_path, capsys):
    data, out = trained
    code, _, err = cli(capsys, "evaluate", tmp_path / "nothing", "--data", data)
    assert code == 2 and "no bundle at" in err
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("bundle.json", "card.md", "manifest.json"):  # half copied: no weights
        (broken / name).write_bytes((out / name).read_bytes())
    code, _, err = cli(capsys, "predict", broken, tmp_path)
    assert code == 2 and "no such file or folder" not in err or "model.safetensors" in err
    code, _, err = cli(capsys, "evaluate", broken, "--data", data)
    assert code == 2 and "has no model.safetensors" in err


def test_class_names_are_matched_by_name(trained, tmp_path, capsys):
    """A folder whose class the model does not know is an error that names the class."""
    _, out = trained
    for name in ("3", "banana"):
        (tmp_path / "test" / name).mkdir(parents=True)
        Image.fromarray(np.zeros((28, 28), np.uint8)).save(tmp_path / "test" / name / "a.png")
    code, _, err = cli(capsys, "evaluate", out, "--data", tmp_path, "--split", "test")
    assert code == 2 and "'banana'" in err
    (tmp_path / "test" / "banana" / "a.png").unlink()
    (tmp_path / "test" / "banana").rmdir()
    code, stdout, _ = cli(capsys, "evaluate", out, "--data", tmp_path, "--split", "test", "--json")
    report = json.loads(stdout)
    assert code == 0 and report["n"] == 1 and report["per_class"]["3"]["support"] == 1


def test_json_output_turns_undefined_figures_into_null():
    from cnnlab.cli.common import finite_json

    report = {"auc": float("nan"), "ci": [np.float32(0.5), float("inf")], "n": np.int64(3)}
    clean = finite_json(report)
    assert clean == {"auc": None, "ci": [0.5, None], "n": 3}
    assert json.loads(json.dumps(clean, allow_nan=False)) == clean
