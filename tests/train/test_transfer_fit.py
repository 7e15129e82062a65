"""Transfer training end to end on a tiny fake X-ray folder: the head on cached features,
the fine-tuning phase, the decision stored in the bundle and used by evaluate/predict."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch

from cnnlab.bundle import load_bundle
from cnnlab.cli import main
from cnnlab.config import recipe_from_dict
from cnnlab.models import create_model
from cnnlab.train import features
from cnnlab.train.phases import uses_feature_cache
from cnnlab.train.run import train_recipe
from tests.conftest import write_image_folder

CLASSES = ["NORMAL", "PNEUMONIA"]


def recipe(source: Path, **sections) -> object:
    raw = {
        "data": {"source": str(source), "image_size": [64, 64], "color_mode": "grayscale",
                 "normalize": "imagenet", "class_mode": "binary", "val_fraction": 0.25},
        "model": {"name": "efficientnet_lite0", "args": {"freeze": "all"}},
        "train": {"epochs": 15, "batch_size": 16, "eval_batch_size": 32, "lr": 0.003,
                  "class_weight": "auto"},
        "decision": {"policy": "youden"},
    }  # fmt: skip
    for key, value in sections.items():
        raw[key] = {**raw.get(key, {}), **value}
    return recipe_from_dict(raw)


@pytest.fixture
def xray_dir(tmp_path: Path) -> Path:
    root = tmp_path / "cxr"
    write_image_folder(root, CLASSES, 20, size=64, seed=1)
    # imbalance, as in the real data: drop some normals
    for f in sorted((root / "NORMAL").iterdir())[12:]:
        f.unlink()
    return root


@pytest.fixture(autouse=True)
def feature_cache(tmp_path: Path, monkeypatch) -> Path:
    d = tmp_path / "features"
    monkeypatch.setenv("CNNLAB_FEATURE_CACHE", str(d))
    return d


def test_frozen_head_trains_on_cached_features(
    xray_dir: Path, tmp_path: Path, feature_cache: Path, caplog
) -> None:
    r = recipe(xray_dir)
    model = create_model("efficientnet_lite0", in_channels=1, input_size=[64, 64])
    assert uses_feature_cache(model, r)
    backbone_before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    caplog.set_level("INFO", logger="cnnlab")
    out = train_recipe(r, out_dir=tmp_path / "run", progress=False)
    assert len(list(feature_cache.glob("*.safetensors"))) == 2  # train and val features
    assert "features computed" in caplog.text and "pos_weight=" in caplog.text
    assert "NORMAL: " in caplog.text  # class counts logged
    assert out.metrics["accuracy"] >= 0.9 and out.metrics["auc"] >= 0.95
    meta = json.loads((tmp_path / "run" / "bundle.json").read_text())
    d = meta["decision"]
    assert d["policy"] == "youden" and d["positive_class"] == "PNEUMONIA" and 0 < d["threshold"] < 1
    assert d["temperature"] > 0 and meta["training"]["loss_weighting"].startswith("pos_weight")
    card = (tmp_path / "run" / "card.md").read_text()
    assert "Not for clinical use" in card and "threshold policy" in card and "95% CI" in card
    # the backbone did not move; a second run reads the features from the cache
    bundle = load_bundle(tmp_path / "run")
    for k, v in bundle.model.backbone.state_dict().items():
        assert torch.equal(v, backbone_before[k]), k
    feats, hit = features.cached_features(bundle.model, out.data.train.images, out.data.preprocess,
                                          bundle.runtime)  # fmt: skip
    assert hit and feats.shape == (len(out.data.train), 1280)


def test_feature_cache_key_changes_with_weights_and_images() -> None:
    from cnnlab.data.preprocess import Preprocess

    m = create_model("efficientnet_lite0", in_channels=1, input_size=[64, 64], pretrained=False)
    pre = Preprocess(1, [64, 64], [0.5], [0.25])
    x = torch.randint(0, 255, (4, 1, 64, 64), dtype=torch.uint8)
    k = features.cache_key(m, x, pre)
    assert k == features.cache_key(m, x.clone(), pre)
    y = x.clone()
    y[0, 0, 0, 0] ^= 1
    assert features.cache_key(m, y, pre) != k
    with torch.no_grad():
        m.backbone.model.conv_head.weight[0, 0] += 1
    assert features.cache_key(m, x, pre) != k


def test_finetune_phase_trains_the_unfrozen_stages_only(xray_dir: Path, tmp_path: Path) -> None:
    r = recipe(xray_dir, train={"epochs": 4},
               finetune={"epochs": 1, "unfreeze": "blocks.6", "batch_size": 8, "lr": 0.001},
               augment={"rotation_range": 10, "zoom_range": 0.1})  # fmt: skip
    ref = create_model("efficientnet_lite0", in_channels=1, input_size=[64, 64])
    out = train_recipe(r, out_dir=tmp_path / "ft", progress=False)
    phases = [row.get("phase") for row in out.result.history]
    assert phases == ["head"] * 4 + ["finetune"]
    trained = load_bundle(tmp_path / "ft").model.backbone.model
    assert torch.equal(
        trained.blocks[5][0].conv_pw.weight, ref.backbone.model.blocks[5][0].conv_pw.weight
    )
    assert torch.equal(trained.bn1.running_mean, ref.backbone.model.bn1.running_mean)
    assert not torch.equal(
        trained.blocks[6][0].conv_pw.weight, ref.backbone.model.blocks[6][0].conv_pw.weight
    )
    assert (tmp_path / "ft" / "finetune" / "history.jsonl").is_file()


def test_evaluate_and_predict_use_the_bundle_decision(
    xray_dir: Path, tmp_path: Path, capsys
) -> None:
    train_recipe(recipe(xray_dir, decision={"policy": "fixed", "threshold": 0.99}),
                 out_dir=tmp_path / "b", progress=False)  # fmt: skip
    assert main(["evaluate", str(tmp_path / "b"), "--data", str(xray_dir), "--split", "val",
                 "--json", "--out", str(tmp_path / "plots")]) == 0  # fmt: skip
    report = json.loads(capsys.readouterr().out)
    for key in ("auc", "sensitivity", "specificity", "ppv", "npv", "threshold", "ece", "brier"):
        assert key in report
    for key in ("auc_ci", "sensitivity_ci", "specificity_ci", "ppv_ci", "npv_ci", "brier_ci"):
        assert len(report[key]) == 2
    assert report["threshold"] == pytest.approx(0.99) and report["positive_class"] == "PNEUMONIA"
    assert {p.name for p in (tmp_path / "plots").iterdir()} >= {"roc_curve.png", "pr_curve.png",
                                                                 "reliability.png"}  # fmt: skip
    image = next((xray_dir / "PNEUMONIA").iterdir())
    assert main(["predict", str(tmp_path / "b"), str(image), "--json"]) == 0
    pred = json.loads(capsys.readouterr().out)["predictions"][0]
    assert pred["threshold"] == pytest.approx(0.99)
    assert pred["label"] == ("PNEUMONIA" if pred["positive_probability"] >= 0.99 else "NORMAL")


def _killed_after(saves: int, source: str, out: str, case: str, resume: bool) -> None:
    """A forked child that trains and SIGKILLs itself right after its `saves`-th checkpoint."""
    import os
    import signal

    from cnnlab.train import checkpoint

    torch.set_num_threads(1)
    write, done = checkpoint.write_checkpoint, []

    def write_then_die(path, payload):
        write(path, payload)
        done.append(payload["step"])
        if len(done) == saves:
            os.kill(os.getpid(), signal.SIGKILL)

    checkpoint.write_checkpoint = write_then_die
    try:
        train_recipe(resumable(Path(source), case), None, out, resume=resume, progress=False)
    finally:
        os._exit(0)


# a checkpoint after every step; no OOD check (faster). "head": 6 epochs of 2 steps on cached
# features; "finetune": 2 of them, then 2 augmented epochs of 3 steps with blocks.6 unfrozen
RESUMABLE = {
    "head": ({"epochs": 6}, {}, {}),
    "finetune": ({"epochs": 2}, {"epochs": 2, "unfreeze": "blocks.6", "batch_size": 8,
                                 "lr": 0.001}, {"rotation_range": 10}),
}  # fmt: skip
# checkpoints saved before each SIGKILL, and where the phase's checkpoint then stands
KILLS = {"head": ((3, 1), [(1, 1), (2, 0)]), "finetune": ((6, 2), [(0, 2), (1, 1)])}


def resumable(source: Path, case: str):
    train, finetune, augment = RESUMABLE[case]
    return recipe(source, train={**train, "threads": 1, "checkpoint_minutes": 1e-6},
                  finetune=finetune, augment=augment,
                  decision={"ood_check": False})  # fmt: skip


@pytest.mark.parametrize("case", list(RESUMABLE))
def test_a_run_killed_in_either_phase_resumes_bit_identical(xray_dir, tmp_path, case, caplog):
    """SIGKILLed twice in its head-on-features phase (or in its fine-tuning phase), a transfer
    run resumes to the weights, rows and TensorBoard steps of a run that never stopped."""
    import multiprocessing as mp

    from safetensors.torch import load_file
    from tensorboard.backend.event_processing import event_accumulator

    from cnnlab.train.checkpoint import CHECKPOINT, read_checkpoint

    r = resumable(xray_dir, case)
    assert uses_feature_cache(create_model("efficientnet_lite0", in_channels=1), r)
    full = train_recipe(r, None, tmp_path / "full", progress=False)
    out, where = tmp_path / "cut", []
    saves, expected = KILLS[case]
    for kill, count in enumerate(saves):
        child = mp.get_context("fork").Process(
            target=_killed_after, args=(count, str(xray_dir), str(out), case, kill > 0)
        )
        child.start()
        child.join(120)
        assert child.exitcode == -9  # killed, not finished
        ckpt = read_checkpoint(out / ("finetune" if case == "finetune" else "") / CHECKPOINT)
        where.append((ckpt["epoch"], ckpt["step"]))
    assert where == expected
    assert not (out / "model.safetensors").exists()
    caplog.set_level("INFO", logger="cnnlab")
    # TensorBoard reads a folder's event files in name order, and a name starts with the second
    # it was opened in: a resume within the second of the last kill could sort before the cut
    # run's file (the pid decides) and its purge then hides the resumed steps. A person resumes
    # seconds later; the test waits for the next second.
    time.sleep(1.01 - time.time() % 1)
    resumed = train_recipe(resumable(xray_dir, case), None, out, resume=True, progress=False)
    ckpt = out / ("finetune" if case == "finetune" else "") / CHECKPOINT
    after = {"head": "epoch 2", "finetune": "step 1 of epoch 2"}[case]
    assert f"resuming from {ckpt} after {after}" in caplog.text  # not started again
    a, b = load_file(str(tmp_path / "full" / "model.safetensors")), load_file(str(out / "model.safetensors"))  # fmt: skip
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    drop = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert drop(resumed.result.history) == drop(full.result.history)
    assert resumed.result.steps == full.result.steps
    phases = [row["phase"] for row in resumed.result.history]
    assert phases == (["head"] * 6 if case == "head" else ["head"] * 2 + ["finetune"] * 2)
    acc = event_accumulator.EventAccumulator(str(out), size_guidance={"scalars": 0})
    acc.Reload()  # what the cut runs logged past their checkpoints is purged: no step twice
    assert [e.step for e in acc.Scalars("loss/train_step")] == [
        s["step"] for s in full.result.steps
    ]


def test_the_feature_phase_writes_history_steps_tensorboard_and_checkpoints(xray_dir, tmp_path):
    """Training the head on cached features is a phase like any other: epoch rows with the
    same figures, a step row per step, TensorBoard scalars on the step axis, checkpoint.pt."""
    from tensorboard.backend.event_processing import event_accumulator

    from cnnlab.train.checkpoint import CHECKPOINT, read_checkpoint

    r = recipe(xray_dir, train={"epochs": 3})
    out = train_recipe(r, out_dir=tmp_path / "run", progress=False).out_dir
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert [set(row) for row in history] == [{"epoch", "loss", "accuracy", "lr", "val_loss",
                                              "val_accuracy", "seconds", "phase"}] * 3  # fmt: skip
    steps = [json.loads(line) for line in (out / "steps.jsonl").read_text().splitlines()]
    assert [s["step"] for s in steps] == list(range(1, 7))  # 24 images in batches of 16
    acc = event_accumulator.EventAccumulator(str(out), size_guidance={"scalars": 0})
    acc.Reload()
    assert [e.step for e in acc.Scalars("loss/train_step")] == [s["step"] for s in steps]
    assert [e.value for e in acc.Scalars("loss/val")] == pytest.approx(
        [row["val_loss"] for row in history]
    )
    assert read_checkpoint(out / CHECKPOINT)["epoch"] == 3
