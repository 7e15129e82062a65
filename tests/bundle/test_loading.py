"""Bundles: what is saved, that it loads back identically, and clear errors when it does not fit."""

import json

import pytest
import torch
from safetensors.torch import save_file

from cnnlab.bundle import load_bundle, save_bundle
from cnnlab.data import Preprocess
from cnnlab.errors import CnnlabError
from cnnlab.models import create_model
from tests.bundle_edit import reseal


@pytest.fixture
def bundle_dir(tmp_path):
    torch.manual_seed(0)
    model = create_model("fastnet", widths=[4, 8])
    pre = Preprocess(channels=1, size=[28, 28], mean=[0.13], std=[0.3])
    return save_bundle(tmp_path / "b", model, "fastnet", {"widths": [4, 8]}, pre, [str(i) for i in range(10)],
                       metrics={"accuracy": 0.5}, recipe={"name": "x"}), model  # fmt: skip


def test_save_then_load_gives_the_same_predictions(bundle_dir):
    path, model = bundle_dir
    meta = json.loads((path / "bundle.json").read_text())
    for key in ("model", "preprocess", "classes", "metrics", "recipe", "versions", "params"):
        assert key in meta
    assert meta["versions"]["torch"] == torch.__version__
    assert (path / "card.md").read_text().startswith("# b")
    b = load_bundle(path)
    x = torch.randint(0, 256, (3, 1, 28, 28), dtype=torch.uint8)
    model.eval()
    expected = torch.softmax(model(b.preprocess.normalize(x)), 1)
    assert torch.allclose(b.predict_proba(x), expected, atol=1e-5)
    assert not list(path.glob(".*.tmp"))


def test_missing_weights(bundle_dir):
    path, _ = bundle_dir
    (path / "model.safetensors").unlink()
    with pytest.raises(CnnlabError, match="has no model.safetensors"):
        load_bundle(path)


def forget_hash(path):
    """As a bundle saved before cnnlab recorded its weights' size and hash (then sealed)."""
    meta = json.loads((path / "bundle.json").read_text())
    del meta["files"]
    (path / "bundle.json").write_text(json.dumps(meta))
    reseal(path)


def replace_weights(path, state):
    """Other weights under the right name, the seal recomputed: what bundle.json's own record
    of the weights, and then the load, make of them."""
    save_file(state, str(path / "model.safetensors"))
    reseal(path)


def test_replaced_weights_fail_the_hash_and_without_one_say_what_is_wrong(bundle_dir):
    path, _ = bundle_dir
    other = create_model("fastnet", widths=[4, 16])
    replace_weights(path, {k: v.contiguous() for k, v in other.state_dict().items()})
    with pytest.raises(CnnlabError, match="bundle.json records .*truncated or replaced"):
        load_bundle(path)
    forget_hash(path)
    replace_weights(path, {k: v.contiguous() for k, v in other.state_dict().items()})
    with pytest.raises(CnnlabError, match="wrong shape .*stage2_conv1.weight"):
        load_bundle(path)
    replace_weights(path, {"nonsense": torch.zeros(1)})
    with pytest.raises(CnnlabError, match="missing .*unexpected"):
        load_bundle(path)


def test_corrupt_files(bundle_dir, tmp_path):
    path, _ = bundle_dir
    forget_hash(path)
    (path / "model.safetensors").write_bytes(b"\x00" * 20)
    reseal(path)
    with pytest.raises(CnnlabError, match="not a readable safetensors file"):
        load_bundle(path)
    (path / "bundle.json").write_text("{not json")
    reseal(path)
    with pytest.raises(CnnlabError, match="unreadable|not valid JSON"):
        load_bundle(path)
    with pytest.raises(CnnlabError, match="no bundle at"):
        load_bundle(tmp_path / "nothing-here")
    (tmp_path / "plain").mkdir()
    with pytest.raises(CnnlabError, match="not a cnnlab bundle"):
        load_bundle(tmp_path / "plain")


def test_pickled_weights_are_never_loaded(bundle_dir):
    path, model = bundle_dir
    forget_hash(path)
    torch.save(model.state_dict(), path / "model.safetensors")  # a pickle under the right name
    reseal(path)
    with pytest.raises(CnnlabError, match="not a readable safetensors file"):
        load_bundle(path)


def test_atomic_writes_get_ordinary_permissions(tmp_path):
    import os
    import stat

    from cnnlab.fileio import atomic_write_text, umask

    atomic_write_text(tmp_path / "card.md", "hello")
    mode = stat.S_IMODE(os.stat(tmp_path / "card.md").st_mode)
    assert mode == 0o666 & ~umask() and mode & 0o044  # readable by others, as open() makes it
