"""The rough edges a new user hits, each fixed: headers that line up and say one thing, the zoo's
column named for what it counts, cards that say what the run did, a warning for a model that
has not learned, the mistakes gallery, light commands that do not load torch, evaluate that
does not decode again, a capped decode cache with `cnnlab cache`, predict that recurses only
when asked, and no progress bar off a terminal."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnlab.cli import main
from cnnlab.cli.judging import format_report
from tests.conftest import ROOT, write_image_folder


def cli(capsys, *args):
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_evaluate_table_header_with_one_character_class_names():
    per_class = {
        str(k): {"precision": 0.9, "recall": 0.8, "f1": 0.85, "support": 10} for k in range(3)
    }
    report = {"model": "m", "data": "d", "split": "test", "n": 30, "accuracy": 0.8, "loss": 0.5,
              "macro_f1": 0.85, "per_class": per_class, "confusion_matrix": [[8, 1, 1]] * 3}  # fmt: skip
    lines = format_report(report).splitlines()
    header = next(line for line in lines if "precision" in line)
    assert header.split() == ["class", "precision", "recall", "f1", "support"]
    row = next(line for line in lines if line.startswith("0 "))
    assert row.index("0.9000") == header.index("precision")  # the columns line up


def test_summary_states_one_shape_order_once(capsys):
    code, out, _ = cli(capsys, "summary", "keras_mnist_cnn")
    assert code == 0
    first = out.splitlines()[0]
    assert "input 28x28x1" in first and "(shapes: H x W x C)" in first
    assert "C x H x W" not in out and out.count("H x W x C") == 1
    assert "26x26x32" in out  # the rows in the same order as the input


def test_zoo_column_counts_layer_outputs_not_activation_functions(capsys):
    code, out, _ = cli(capsys, "zoo", "--compare", "lenet5")
    assert code == 0
    assert "layer outputs" in out.splitlines()[0] and "activations" not in out
    code, out, _ = cli(capsys, "zoo", "--compare", "lenet5", "--json")
    row = json.loads(out)["models"][0]
    assert "output_values" in row and "activations" not in row and row["output_values"] > 1000


def folder_meta(**changes) -> dict:
    meta = {
        "name": "folder", "model": {"name": "keras_folder_cnn", "args": {}}, "params": 19_034_177,
        "classes": ["NORMAL", "PNEUMONIA"], "class_mode": "binary",
        "preprocess": {"channels": 3, "size": [150, 150], "resize": "stretch", "mean": [0.0] * 3,
                       "std": [1.0] * 3},
        "decision": {"threshold": 0.5, "temperature": 1.0, "policy": "fixed"},
        "data": {"source": "/data/chest_xray", "format": "image-folder", "val_origin": "held-out",
                 "counts": {"train": {"NORMAL": 1207, "PNEUMONIA": 3487}}},
        "training": {"seconds": 60, "runtime": "cpu / fp32", "loss_weighting": "none"},
        "recipe": {"data": {"val_fraction": 0.1}, "model": {"name": "keras_folder_cnn"}},
        "metrics": {"n": 522, "accuracy": 0.7433, "confusion_matrix": [[0, 134], [0, 388]]},
    }  # fmt: skip
    meta.update(changes)
    return meta


def test_folder_card_says_what_the_run_did():
    from cnnlab.report.card import medical_card

    card = medical_card(folder_meta())
    assert (
        "class imbalance: 2.89:1 (PNEUMONIA 3487, NORMAL 1207) in training; loss weighting: none"
        in card
    )
    assert "transfer-learned" not in card and "trained from scratch" in card
    assert "224x224" not in card and "resized to 150x150" in card
    assert "**Warning: it predicts PNEUMONIA for 100% of the 522 validation images (74% are " \
           "PNEUMONIA); NORMAL is never recognised (recall 0)" in card  # fmt: skip
    shipped = json.loads((ROOT / "src/cnnlab/shipped/pneumonia/bundle.json").read_text())
    card = medical_card(shipped)
    assert "transfer-learned from ImageNet weights" in card and "224x224" in card
    assert "Warning" not in card  # a model that works is not warned about


def test_degenerate_warning_cases():
    from cnnlab.report.metrics import degenerate_warning

    classes = ["a", "b", "c"]
    assert degenerate_warning([[50, 0, 0], [0, 40, 10], [0, 5, 45]], classes) is None
    one = degenerate_warning([[50, 0, 0], [49, 1, 0], [48, 0, 2]], classes)
    assert one.startswith("Warning: it predicts a for 98% of the 150 validation images (33% are a)")
    zero = degenerate_warning([[50, 0, 0], [0, 50, 0], [20, 30, 0]], classes)
    assert "c is never recognised (recall 0)" in zero and "predicts" not in zero
    # a rare class that the model gets right is not degenerate, however dominant the other
    assert degenerate_warning([[970, 2], [3, 25]], ["common", "rare"]) is None


def test_evaluate_warns_about_a_one_class_model_and_draws_its_mistakes(tmp_path, capsys):
    from tests.app.conftest import make_app_bundle

    bundle = make_app_bundle(tmp_path / "always", binary=True)  # p(PNEUMONIA) ~0.9 for anything
    data = write_image_folder(tmp_path / "site", ["NORMAL", "PNEUMONIA"], 6, size=64, mode="L")
    out = tmp_path / "eval"
    code, stdout, err = cli(capsys, "evaluate", bundle, "--data", data, "--json", "--out", out)
    assert code == 0
    report = json.loads(stdout)
    assert report["warning"].startswith(
        "Warning: it predicts PNEUMONIA for 100% of the 12 test images"
    )
    assert [line for line in err.splitlines() if "Warning:" in line] == [
        f"cnnlab: {report['warning']}"
    ]
    mistakes = json.loads((out / "mistakes.json").read_text())
    assert len(mistakes) == 6 and {m["true"] for m in mistakes} == {"NORMAL"}
    assert all(m["predicted"] == "PNEUMONIA" and m["file"].endswith(".png") for m in mistakes)
    probs = [m["probability"] for m in mistakes]
    assert probs == sorted(probs, reverse=True)  # the surest mistakes first
    assert (out / "mistakes.png").read_bytes()[:4] == b"\x89PNG"


def _imports_after(args: list[str], first: str = "") -> list[str]:
    code = (
        f"import sys\n{first}\nfrom cnnlab.cli import main\n"
        f"try:\n    main({args!r})\nexcept SystemExit:\n    pass\n"
        "print('HEAVY', sorted(m for m in ('torch', 'numpy', 'matplotlib', 'model_signing')"
        " if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    return json.loads(done.stdout.rsplit("HEAVY ", 1)[1].replace("'", '"'))


def test_light_commands_do_not_import_torch():
    assert _imports_after(["--help"]) == []
    assert _imports_after(["conv", "--size", "32", "--kernel", "3"]) == []
    assert _imports_after(["conv", "--size", "32", "--layers", "c3:32,p2,c3:64s2psame"]) == []
    # the control: the check sees torch when something did import it
    assert _imports_after(["conv", "--size", "8"], "import torch") == ["numpy", "torch"]


def test_predict_recurses_into_subfolders_only_when_asked(tmp_path, capsys):
    from tests.app.conftest import make_app_bundle

    bundle = make_app_bundle(tmp_path / "b", binary=False)
    folder = tmp_path / "imgs"
    (folder / "plots").mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (64, 64), dtype=np.uint8)).save(folder / "top.png")
    Image.fromarray(rng.integers(0, 255, (64, 64), dtype=np.uint8)).save(
        folder / "plots" / "deep.png"
    )
    code, out, _ = cli(capsys, "predict", bundle, folder, "--json")
    assert code == 0
    assert [Path(p["file"]).name for p in json.loads(out)["predictions"]] == ["top.png"]
    code, out, _ = cli(capsys, "predict", bundle, folder, "--json", "--recursive")
    assert sorted(Path(p["file"]).name for p in json.loads(out)["predictions"]) == [
        "deep.png",
        "top.png",
    ]
    (folder / "top.png").unlink()
    code, _, err = cli(capsys, "predict", bundle, folder)
    assert code == 2 and "add --recursive" in err


def test_no_progress_bar_when_output_is_not_a_terminal(idx_dir, capsys, monkeypatch):
    from cnnlab.config import recipe_from_dict
    from cnnlab.data import prepare_data
    from cnnlab.fileio import on_terminal
    from cnnlab.train.fit import fit
    from cnnlab.train.run import build_model
    from tests.conftest import tiny_recipe_dict

    recipe = recipe_from_dict(tiny_recipe_dict(idx_dir, epochs=1))
    data = prepare_data(recipe.data)
    model, _ = build_model(recipe, data)
    assert not on_terminal()  # pytest captures both streams
    fit(model, data, recipe, progress=True)
    err = capsys.readouterr().err
    assert "step/s" not in err and "it/s" not in err and "%|" not in err
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True, raising=False)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    assert on_terminal()


@pytest.fixture
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNLAB_DATA", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_evaluate_val_reuses_the_runs_decode_cache(own_cache, tmp_path, monkeypatch):
    """A CIFAR-style recipe decodes at the images' own size (image_size unset, rgb): evaluating
    its validation split must find that cache entry, not decode every image again."""
    from cnnlab.bundle import load_bundle
    from cnnlab.config import recipe_from_dict
    from cnnlab.data import decode
    from cnnlab.evaluate.scores import evaluate_bundle
    from cnnlab.train.run import train_recipe

    data = write_image_folder(tmp_path / "folder", ["cat", "dog", "frog"], 30, size=16)
    recipe = recipe_from_dict({
        "name": "cifar-like", "data": {"source": str(data), "val_fraction": 0.2, "color_mode": "rgb"},
        "model": {"name": "fastnet", "args": {"widths": [4, 8], "kernel_size": 3, "padding": "same"}},
        "train": {"epochs": 1, "batch_size": 32, "threads": 1},
    })  # fmt: skip
    out = train_recipe(recipe, out_dir=tmp_path / "run", progress=False).out_dir
    entries = sorted((own_cache / "decoded").glob("*.json"))
    assert len(entries) == 1

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again although the run cached this folder")

    monkeypatch.setattr(decode, "decode_many", no_decoding)
    report = evaluate_bundle(load_bundle(out), str(data), "val")
    assert report["n"] == 18 and sorted((own_cache / "decoded").glob("*.json")) == entries


def test_decode_cache_is_capped_listed_and_cleared(own_cache, tmp_path, monkeypatch, capsys):
    from cnnlab.data import load_source

    first = write_image_folder(tmp_path / "one", ["a", "b"], 40, size=16)
    second = write_image_folder(tmp_path / "two", ["a", "b"], 40, size=16, seed=1)
    load_source(str(first))
    load_source(str(second))
    code, out, _ = cli(capsys, "cache", "--json")
    listed = json.loads(out)
    assert code == 0 and len(listed["entries"]) == 2
    assert listed["entries"][0]["what"].startswith(str(second))  # most recently used first
    size = listed["entries"][0]["bytes"]
    monkeypatch.setenv("CNNLAB_CACHE_MAX_GB", str(0.5 * size / 1e9))  # room for a small one
    load_source(str(first), image_size=[8, 8])  # a new entry: the least recently used goes
    kept = [e["what"] for e in json.loads(cli(capsys, "cache", "--json")[1])["entries"]]
    assert len(kept) == 1 and "[8, 8]" in kept[0]
    code, out, _ = cli(capsys, "cache", "clear")
    assert code == 0 and out.startswith("removed 1 entry (")
    assert json.loads(cli(capsys, "cache", "--json")[1])["entries"] == []


def test_cache_lists_and_clears_onnx_exports_and_kept_answers(own_cache, tmp_path, capsys):
    """serve's ONNX exports (with the digest of what passed parity) and the names table and
    summaries are cnnlab's disk use too: listed, and cleared like the rest."""
    (own_cache / "onnx").mkdir(parents=True)
    (own_cache / "onnx" / "k1.onnx").write_bytes(b"x" * 1000)
    (own_cache / "onnx" / "k1.sha256").write_text("ab" * 32)
    assert cli(capsys, "summary", "keras_mnist_cnn")[0] == 0  # keeps its answer under index/
    listed = json.loads(cli(capsys, "cache", "--json")[1])["entries"]
    kinds = {e["kind"]: e for e in listed}
    assert kinds["onnx"]["bytes"] == 1064 and kinds["onnx"]["key"] == "k1"
    assert "summaries" in kinds["index"]["what"] and kinds["index"]["bytes"] > 0
    code, out, _ = cli(capsys, "cache", "clear", "--kind", "onnx")
    assert code == 0 and out.startswith("removed 1 entry (")
    assert not any((own_cache / "onnx").iterdir()) and (own_cache / "index").is_dir()
    assert cli(capsys, "cache", "clear")[0] == 0 and not any((own_cache / "index").iterdir())
