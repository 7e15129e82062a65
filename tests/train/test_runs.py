"""Runs you can compare: TensorBoard events TensorBoard itself reads back, step rows for short
runs, curves with sensible axes, `cnnlab runs` (table, JSON, --plot), one val_loss definition."""

from __future__ import annotations

import json

import pytest

from cnnlab.report.figures import curves_figure, runs_figure
from cnnlab.report.runs import find_runs, format_runs, read_run


def test_tensorboard_lists_the_scalars_images_and_recipe(tiny_runs):
    from tensorboard.backend.event_processing import event_accumulator

    run = tiny_runs[0]
    acc = event_accumulator.EventAccumulator(str(run), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    tags = acc.Tags()
    assert {"loss/train_step", "accuracy/train_step", "lr", "loss/train", "accuracy/train",
            "loss/val", "accuracy/val", "epoch"} <= set(tags["scalars"])  # fmt: skip
    steps = [json.loads(line) for line in (run / "steps.jsonl").read_text().splitlines()]
    per_step = acc.Scalars("loss/train_step")
    assert [e.step for e in per_step] == [r["step"] for r in steps]  # every step of a short run
    assert [e.value for e in per_step] == pytest.approx([r["loss"] for r in steps], rel=1e-6)
    epochs = acc.Scalars("accuracy/val")
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    assert [e.value for e in epochs] == pytest.approx([r["val_accuracy"] for r in history])
    assert epochs[-1].step == steps[-1]["step"]  # epoch scalars sit on the global step axis
    assert {"curves", "confusion_matrix", "mistakes"} <= set(tags["images"])
    assert "recipe/text_summary" in tags["tensors"]


def test_a_short_run_keeps_a_row_per_step(tiny_runs):
    record = read_run(tiny_runs[1])  # 1 epoch of 480 images in batches of 64: 8 steps
    assert [r["step"] for r in record.steps] == list(range(1, 9))
    assert record.steps[-1]["epoch"] == 1.0 and 0 < record.steps[0]["epoch"] < 0.2
    assert len(record.history) == 1


def test_curves_have_an_epoch_axis_from_zero_and_accuracy_never_past_one(tiny_runs):
    record = read_run(tiny_runs[1])
    fig = curves_figure(record.history, record.steps)
    loss_ax, acc_ax = fig.axes[:2]
    assert acc_ax.get_xlim()[0] == 0 and acc_ax.get_xlim()[1] >= 1  # not 0.96 .. 1.04
    assert acc_ax.get_ylim()[1] <= 1.01
    lines = {line.get_label(): line for line in acc_ax.get_lines()}
    assert len(lines["train (per step)"].get_xdata()) == 8  # a curve, not one dot
    # one epoch at 99% : the axis still spans a readable range below 1
    lo, hi = curves_figure([{"epoch": 1, "loss": 0.1, "accuracy": 0.99}]).axes[1].get_ylim()
    assert hi <= 1.01 and hi - lo >= 0.02


def test_validation_loss_has_one_definition(tiny_runs):
    """The recipe trains with label smoothing 0.1; the logged val_loss is plain cross-entropy,
    the same figure the bundle (card, evaluate) reports, and the card says so."""
    run = tiny_runs[0]
    meta = json.loads((run / "bundle.json").read_text())
    last = read_run(run).history[-1]
    assert last["val_loss"] == pytest.approx(meta["metrics"]["loss"], abs=1e-4)
    assert "label smoothing 0.1" in meta["training"]["loss"]
    assert "val_loss: plain cross-entropy" in meta["training"]["loss"]
    card = (run / "card.md").read_text()
    assert "plain cross-entropy, no label smoothing" in card


def test_runs_table_json_and_overlaid_curves(tiny_runs, run_cli, tmp_path):
    root = tiny_runs[0].parent
    plot = tmp_path / "runs.png"
    done = run_cli("runs", root, "--plot", plot)
    assert done.returncode == 0, done.stderr
    header, *rows = done.stdout.splitlines()
    assert header.split()[:4] == ["name", "recipe", "model", "params"]
    assert [r.split()[0] for r in rows] == ["tiny-a", "tiny-b"]
    assert "fastnet" in rows[0] and "tiny-a" in rows[0].split()[1]
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    as_json = json.loads(run_cli("runs", *tiny_runs, "--json").stdout)["runs"]
    a = as_json[0]
    assert a["epochs"] == 2 and a["model"] == "fastnet" and a["params"] > 1000
    assert a["best_val_accuracy"] == max(r["val_accuracy"] for r in read_run(tiny_runs[0]).history)
    assert a["runtime"].split(", ")[1] in ("fp32", "bf16 autocast")  # capability, precision
    bad = run_cli("runs", tmp_path / "nope")
    assert bad.returncode == 2 and "no such folder" in bad.stderr


def test_runs_table_shows_recorded_evaluations(tiny_runs, tmp_path):
    import shutil

    copy = tmp_path / "evaluated"
    shutil.copytree(tiny_runs[0], copy)
    meta = json.loads((copy / "bundle.json").read_text())
    meta["external"] = [{"name": "site/test", "n": 200, "accuracy": 0.9712}]
    (copy / "bundle.json").write_text(json.dumps(meta))
    text = format_runs(find_runs([copy]))
    assert "site/test (200): acc 97.12%" in text


def test_runs_figure_overlays_each_run(tiny_runs):
    fig = runs_figure([read_run(r).curves() for r in tiny_runs])
    train_loss, val_loss, val_acc = fig.axes[:3]
    assert [line.get_label() for line in train_loss.get_lines()] == ["tiny-a", "tiny-b"]
    assert len(val_acc.get_lines()) == 2 and val_acc.get_ylim()[1] <= 1.01
    assert train_loss.get_xlim()[0] == 0


def test_training_warns_in_one_line_and_in_the_card_when_the_model_learns_nothing(
    tmp_path, monkeypatch
):
    """The same image in both classes: the model cannot tell them apart and gives one answer
    for everything (the brief's folder CNN called every X-ray PNEUMONIA after one epoch)."""
    import logging

    import numpy as np
    from PIL import Image

    from cnnlab.config import recipe_from_dict
    from cnnlab.train.run import train_recipe

    monkeypatch.setenv("CNNLAB_DATA", str(tmp_path / "cache"))
    same = np.random.default_rng(0).integers(0, 255, (16, 16), dtype=np.uint8)
    for cls, n in (("common", 90), ("rare", 30)):
        (tmp_path / "noise" / cls).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(same).save(tmp_path / "noise" / cls / f"{i}.png")
    recipe = recipe_from_dict({
        "name": "noise", "data": {"source": str(tmp_path / "noise"), "val_fraction": 0.25,
                                  "class_mode": "binary", "normalize": "unit"},
        "model": {"name": "fastnet", "args": {"widths": [4, 8], "kernel_size": 3, "padding": "same"}},
        "train": {"epochs": 2, "batch_size": 30, "threads": 1},
    })  # fmt: skip
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append  # the CLI's logger may not propagate to pytest's
    logging.getLogger("cnnlab").addHandler(handler)
    try:
        out = train_recipe(recipe, out_dir=tmp_path / "run", progress=False).out_dir
    finally:
        logging.getLogger("cnnlab").removeHandler(handler)
    warnings = [r.getMessage() for r in records if r.getMessage().startswith("Warning:")]
    assert len(warnings) == 1 and "\n" not in warnings[0]
    assert "for 100% of the 30 validation images" in warnings[0]
    assert "is never recognised (recall 0)" in warnings[0]
    assert f"**{warnings[0]}**" in (out / "card.md").read_text()


def test_a_hostile_run_folder_is_one_clear_error(tiny_runs, tmp_path, capsys):
    """`cnnlab runs` reads folders others may have made: bundle.json and the history are read
    capped and strictly (a 1 GB sparse history.jsonl, 5,000-deep JSON, a duplicated key)."""
    import os
    import resource
    import shutil

    from cnnlab.cli import main

    cases = {
        "deep": ("bundle.json", "[" * 5000 + "]" * 5000, "nested more than"),
        "duplicate": ("bundle.json", '{"format": "cnnlab-bundle", "format": "x"}', "duplicate"),
        "huge history": ("history.jsonl", None, "over the 256 MB limit"),
    }
    for name, (file, text, message) in cases.items():
        run = tmp_path / name
        shutil.copytree(tiny_runs[0], run)
        if text is None:
            os.truncate(run / file, 2**30)  # sparse: no disk used
        else:
            (run / file).write_text(text)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        code = main(["runs", str(run)])
        err = capsys.readouterr().err
        assert code == 2 and message in err and file in err and "Traceback" not in err, (name, err)
        assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - peak < 2**28, name


def test_a_recipe_that_does_not_list_tensorboard_writes_no_events(idx_dir, tmp_path):
    from cnnlab.config import recipe_from_dict
    from cnnlab.train.run import train_recipe
    from tests.conftest import tiny_recipe_dict

    raw = tiny_recipe_dict(idx_dir, epochs=1, callbacks=["checkpoint"])
    out = train_recipe(recipe_from_dict(raw), out_dir=tmp_path / "run", progress=False).out_dir
    assert (out / "checkpoint.pt").is_file() and (out / "history.jsonl").is_file()
    assert not list(out.glob("events.out.tfevents.*"))
