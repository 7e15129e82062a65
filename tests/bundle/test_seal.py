"""Edited bundles never answer: each hostile edit found in the wild is refused by every load,
named (which file or field, what was expected, what was found), and `cnnlab check` fails on
it. The seal (manifest.json) finds any edit made outside cnnlab's commands; past the seal
(someone who recomputed it), plausibility bounds, paths and capped reads still hold."""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from cnnlab.bundle import check_bundle, load_bundle, save_bundle
from cnnlab.cli import main
from cnnlab.data import Preprocess
from cnnlab.errors import CnnlabError
from cnnlab.models import create_model
from tests.bundle_edit import MANIFEST, edit_meta, reseal, setter
from tests.conftest import digit_images

CLASSES = ["NORMAL", "PNEUMONIA"]


@pytest.fixture(scope="module")
def sealed(tmp_path_factory) -> Path:
    """A binary bundle as training writes it: a fitted decision and an out-of-distribution
    check (fitted on toy digits: enough to have real means and covariances)."""
    from cnnlab.data.dataset import ImageData
    from cnnlab.evaluate.ood_fit import fit_ood
    from cnnlab.runtime.device import choose_runtime
    from cnnlab.runtime.ood import save_ood

    torch.manual_seed(0)
    args = {"in_channels": 1, "num_classes": 1, "widths": [4, 8]}
    model = create_model("fastnet", **args).eval()
    pre = Preprocess(channels=1, size=[28, 28], mean=[0.13], std=[0.3])
    x, y = digit_images(240, seed=0)
    images, labels = torch.from_numpy(x)[:, None], torch.from_numpy(y % 2)
    train = ImageData(images[:160], labels[:160], CLASSES)
    val = ImageData(images[160:], labels[160:], CLASSES)
    check = fit_ood(model, train, val, pre, choose_runtime("cpu", "fp32", "auto"))
    out = tmp_path_factory.mktemp("bundles") / "xray"
    out.mkdir()
    save_ood(out, check)
    decision = {"threshold": 0.42, "temperature": 1.3, "policy": "target_sensitivity:0.95",
                "positive_class": "PNEUMONIA", "fitted_on": "val"}  # fmt: skip
    return save_bundle(out, model, "fastnet", args, pre, CLASSES, class_mode="binary",
                       decision=decision, extra={"ood": check.record})  # fmt: skip


@pytest.fixture
def copy(sealed, tmp_path) -> Path:
    out = tmp_path / "copy"
    shutil.copytree(sealed, out)
    return out


def refused(path: Path, *fragments: str) -> str:
    """The load's error, which must name every fragment; `cnnlab check` fails on it too."""
    with pytest.raises(CnnlabError) as caught:
        load_bundle(path)
    message = str(caught.value)
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    checks, bundle = check_bundle(path)
    assert bundle is None and not checks[-1].ok and checks[-1].detail == message
    assert "\n" not in message
    return message


def test_the_bundle_as_saved_loads(sealed):
    bundle = load_bundle(sealed)
    assert bundle.ood is not None and bundle.threshold == 0.42
    sealed_files = json.loads((sealed / MANIFEST).read_text())["files"]
    assert sorted(sealed_files) == ["bundle.json", "card.md", "model.safetensors",
                                    "ood.safetensors"]  # fmt: skip


# ----------------------------------------------------------------------------- the seal


def test_an_edit_to_bundle_json_breaks_the_seal(copy):
    edit_meta(copy, setter("decision.threshold", 0.9), seal=False)
    refused(copy, "bundle.json", "manifest.json", "sha256")


def test_swapped_class_names_break_the_seal(copy):
    edit_meta(copy, lambda meta: meta.update(classes=CLASSES[::-1]), seal=False)
    refused(copy, "bundle.json", "changed since it was sealed")


def test_swapped_class_names_past_the_seal_contradict_the_decision(copy):
    edit_meta(copy, lambda meta: meta.update(classes=CLASSES[::-1]))
    refused(copy, "decision.positive_class", "PNEUMONIA", "classes[1]")


def test_deleting_the_weights_record_no_longer_turns_the_hash_off(copy):
    edit_meta(copy, lambda meta: meta.pop("files"), seal=False)
    weights = bytearray((copy / "model.safetensors").read_bytes())
    weights[-5] ^= 0xFF
    (copy / "model.safetensors").write_bytes(bytes(weights))
    refused(copy, "bundle.json")


def test_a_bundle_without_a_manifest_is_refused_saying_how_to_trust_it(copy):
    (copy / MANIFEST).unlink()
    message = refused(copy, "not sealed", "cnnlab seal")
    assert str(copy) in message


def test_each_file_is_sealed_and_a_change_is_named_with_both_digests(copy):
    before = json.loads((copy / MANIFEST).read_text())["files"]["ood.safetensors"]["sha256"]
    tensors = load_file(str(copy / "ood.safetensors"))
    tensors["0.means"][0, 0] += 1.0
    save_file(tensors, str(copy / "ood.safetensors"))
    message = refused(copy, "ood.safetensors", before[:12])
    assert "found" in message


def test_a_deleted_file_is_named(copy):
    (copy / "card.md").unlink()
    refused(copy, "card.md", "missing")


def test_a_file_the_manifest_does_not_seal_is_refused(copy):
    reseal(copy, ["bundle.json", "model.safetensors", "card.md"])  # ood.safetensors left out
    refused(copy, "ood.safetensors", "manifest.json does not seal")


def test_other_files_of_a_run_folder_do_not_break_the_seal(copy):
    for name in ("history.jsonl", "checkpoint.pt", "curves.png", "mistakes.png"):
        (copy / name).write_bytes(b"anything")
    assert load_bundle(copy).ood is not None


def test_nothing_in_bundle_json_switches_the_seal_off(copy):
    for key in ("seal", "manifest", "verify", "files"):
        edit_meta(copy, setter(key, False), seal=False)
        refused(copy, "bundle.json")


# ----------------------------------------------------------------------------- bounds


HOSTILE_VALUES = [
    ("decision.threshold", 1e-300, "decision.threshold"),
    ("decision.temperature", 1e-300, "decision.temperature"),
    ("ood.threshold", 1e30, "ood.threshold"),
    ("ood.threshold", -1.0, "ood.threshold"),
    ("ood.parts.0.scale", 1e30, "ood.parts[0].scale"),
    ("preprocess.mean", [7.0], "preprocess.mean"),
    ("preprocess.std", [50.0], "preprocess.std"),
]


@pytest.mark.parametrize("field, value, named", HOSTILE_VALUES,
                         ids=[f"{f}={v!r}" for f, v, _ in HOSTILE_VALUES])  # fmt: skip
def test_a_value_training_cannot_produce_is_refused_past_the_seal(copy, field, value, named):
    def change(meta):
        if field.startswith("ood.parts.0."):
            meta["ood"]["parts"][0][field.rsplit(".", 1)[1]] = value
        else:
            setter(field, value)(meta)

    edit_meta(copy, change)
    message = refused(copy, named)
    assert any(w in message for w in ("outside", "within", "between")), message


def test_the_decision_block_is_required(copy):
    edit_meta(copy, lambda meta: meta.pop("decision"))
    refused(copy, "decision", "required")
    edit_meta(copy, lambda meta: meta.update(decision={"policy": "fixed"}))
    refused(copy, "decision.threshold", "required")


def test_a_duplicated_key_is_refused(copy):
    text = (copy / "bundle.json").read_text()
    edited = text.replace('"threshold": 0.42', '"threshold": 0.42, "threshold": 0.01', 1)
    assert edited != text
    (copy / "bundle.json").write_text(edited)
    reseal(copy)
    refused(copy, "duplicate", "threshold")


def test_a_nan_in_the_ood_tensors_is_refused(copy):
    tensors = load_file(str(copy / "ood.safetensors"))
    tensors["1.means"][0, 3] = math.nan
    save_file(tensors, str(copy / "ood.safetensors"))
    refused(copy, "ood.safetensors", "sha256")  # unsealed: the seal names it
    reseal(copy)
    refused(copy, "1.means", "NaN")


def test_ood_tensors_of_another_shape_than_the_record_are_refused(copy):
    tensors = load_file(str(copy / "ood.safetensors"))
    tensors["0.means"] = tensors["0.means"][:, :5].contiguous()
    save_file(tensors, str(copy / "ood.safetensors"))
    reseal(copy)
    refused(copy, "0.means", "shape")


# ----------------------------------------------------------------------------- paths and caps


def test_an_absolute_ood_file_is_refused(copy, tmp_path):
    elsewhere = tmp_path / "elsewhere.safetensors"
    shutil.copyfile(copy / "ood.safetensors", elsewhere)
    edit_meta(copy, setter("ood.file", str(elsewhere)))
    refused(copy, "ood.file", "plain file name")
    edit_meta(copy, setter("ood.file", "../copy/ood.safetensors"))
    refused(copy, "ood.file", "plain file name")


def test_a_fifo_is_refused_without_blocking(copy, run_cli, tmp_path):
    os.mkfifo(copy / "ood.fifo")
    edit_meta(copy, setter("ood.file", "ood.fifo"))
    reseal(copy, ["bundle.json", "model.safetensors", "card.md", "ood.fifo"])
    done = run_cli("check", copy, timeout=120)  # a blocking open would hang here
    assert done.returncode == 2 and "ood.fifo is not a regular file" in done.stderr
    os.mkfifo(tmp_path / "far.fifo")
    edit_meta(copy, setter("ood.file", str(tmp_path / "far.fifo")))
    image = tmp_path / "x.png"
    from PIL import Image

    Image.fromarray(digit_images(1, seed=3)[0][0]).save(image)
    done = run_cli("predict", copy, image, timeout=120)
    assert done.returncode == 2 and "plain file name" in done.stderr


def test_a_card_that_is_a_symlink_is_refused_even_pointing_inside(copy, tmp_path):
    outside = tmp_path / "passwd"
    outside.write_text("root:x:0:0:root:/root:/bin/bash\n")
    (copy / "card.md").unlink()
    (copy / "card.md").symlink_to(outside)
    reseal(copy)  # the seal of the link's target: the link itself is still refused
    refused(copy, "card.md", "symbolic link")
    (copy / "notes.md").write_text("# a card\n")
    (copy / "card.md").unlink()
    (copy / "card.md").symlink_to("notes.md")
    reseal(copy)
    refused(copy, "card.md", "symbolic link")


def test_a_huge_card_is_refused_before_it_is_read(copy):
    with open(copy / "card.md", "r+b") as f:  # noqa: PTH123 - sparse: no disk used
        f.truncate(2 * 2**30)
    reseal(copy)
    refused(copy, "card.md", "over the 1 MB")


def test_the_card_shown_is_the_one_verified_at_load(copy):
    bundle = load_bundle(copy)
    card = bundle.card
    assert card.startswith("# xray")
    (copy / "card.md").unlink()
    (copy / "card.md").symlink_to("/etc/passwd")
    assert bundle.card == card  # the API and the app show what the load verified


# ----------------------------------------------------------------------------- cnnlab check / seal


def cli(capsys, *args):
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_check_reports_each_new_check_on_its_own_line(sealed, capsys):
    code, out, err = cli(capsys, "check", sealed)
    assert code == 0 and not err, err
    lines = out.splitlines()
    seal_lines = [line for line in lines if line.split()[1:2] == ["seal"]]
    named = " ".join(seal_lines)
    for name in ("manifest.json", "bundle.json", "model.safetensors", "card.md",
                 "ood.safetensors"):  # fmt: skip
        assert name in named
    for check in ("paths", "bounds", "ood"):
        assert any(line.split()[1:2] == [check] for line in lines), (check, out)
    assert "threshold 0.42" in out and "not signed" in out


def test_check_fails_on_what_a_load_refuses(copy, capsys):
    (copy / MANIFEST).unlink()
    code, out, err = cli(capsys, "check", copy, "--json")
    report = json.loads(out)
    assert code == 2 and not report["ok"] and report["checks"][-1]["name"] == "seal"
    assert "cnnlab seal" in err


def test_cnnlab_seal_trusts_a_reviewed_bundle_and_refuses_a_broken_one(copy, capsys):
    edit_meta(copy, setter("metrics", {"accuracy": 0.9}), seal=False)
    code, out, err = cli(capsys, "seal", copy)
    assert code == 0, err
    assert "bundle.json" in out and "changed" in out  # what the new seal accepts, said
    assert load_bundle(copy).meta["metrics"]["accuracy"] == 0.9
    (copy / MANIFEST).unlink()
    code, out, err = cli(capsys, "seal", copy)
    assert code == 0 and load_bundle(copy)
    edit_meta(copy, setter("decision.threshold", 1e-300), seal=False)
    code, out, err = cli(capsys, "seal", copy)
    assert code == 2 and "decision.threshold" in err
    code, _, err = cli(capsys, "check", copy)
    assert code == 2  # the refused seal left the bundle as it was: unusable


def test_the_shipped_bundle_is_sealed():
    from cnnlab.bundle.catalog import shipped_bundles

    path = shipped_bundles()["pneumonia"]
    files = json.loads((path / MANIFEST).read_text())["files"]
    assert sorted(files) == ["bundle.json", "card.md", "model.safetensors", "ood.safetensors",
                            "training_hashes.safetensors"]  # fmt: skip
    checks, bundle = check_bundle("pneumonia")
    assert bundle is not None, checks[-1]


def test_training_refuses_before_it_starts_what_its_bundle_could_not_hold(
    idx_dir, tmp_path, monkeypatch
):
    import cnnlab.train.run as run
    from cnnlab.config import recipe_from_dict
    from tests.conftest import tiny_recipe_dict

    monkeypatch.setattr(run, "fit_model", lambda *a, **k: pytest.fail("it trained first"))
    raw = tiny_recipe_dict(idx_dir)
    raw["data"].update(normalize="custom", mean=[2.0], std=[0.5])
    with pytest.raises(CnnlabError, match=r"preprocess.mean\[0\] 2.0 is outside \[0, 1\]"):
        run.train_recipe(recipe_from_dict(raw), out_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()
