"""CIFAR python batches (read without unpickling code), MedMNIST .npz, format detection, splits."""

import pickle

import numpy as np
import pytest
import torch

from cnnlab.config import DataConfig
from cnnlab.data import load_source, prepare_data
from cnnlab.data.cifar import CIFAR10_CLASSES
from cnnlab.data.splits import patient_id, stratified_split
from cnnlab.errors import CnnlabError


def write_cifar(root, n_train=20, n_test=10, seed=0):
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for name, n in [("data_batch_1", n_train), ("data_batch_2", n_train), ("test_batch", n_test)]:
        batch = {
            "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            "labels": list(rng.integers(0, 10, n)),
        }
        (root / name).write_bytes(pickle.dumps(batch))
    (root / "batches.meta").write_bytes(pickle.dumps({"label_names": CIFAR10_CLASSES}))
    return root


def test_cifar_batches(tmp_path):
    root = write_cifar(tmp_path / "cifar-10-batches-py")
    loaded = load_source(str(tmp_path))
    assert loaded.format == "cifar10-python"
    train = loaded.splits["train"]
    assert train.images.shape == (40, 3, 32, 32) and train.images.dtype == torch.uint8
    assert train.classes == CIFAR10_CLASSES
    raw = pickle.loads((root / "data_batch_1").read_bytes())
    # channel-major rows: pixel (0, 0) of channel 1 is byte 1024
    assert int(train.images[0, 1, 0, 0]) == int(raw["data"][0][1024])


class Boom:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_cifar_batch_with_code_is_refused(tmp_path, capsys):
    root = tmp_path / "c"
    write_cifar(root)
    (root / "data_batch_1").write_bytes(pickle.dumps({"data": Boom(), "labels": [1]}))
    with pytest.raises(CnnlabError, match="refusing to load builtins.print"):
        load_source(str(root))
    assert "this must never run" not in capsys.readouterr().out


def test_npz_medmnist(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "pneumoniamnist.npz"
    np.savez(
        path,
        train_images=rng.integers(0, 256, (50, 28, 28), dtype=np.uint8),
        train_labels=rng.integers(0, 2, (50, 1)),
        val_images=rng.integers(0, 256, (60, 28, 28), dtype=np.uint8),
        val_labels=rng.integers(0, 2, (60, 1)),
        test_images=rng.integers(0, 256, (12, 28, 28, 3), dtype=np.uint8),
        test_labels=rng.integers(0, 2, (12, 1)),
    )
    loaded = load_source(str(path))
    assert set(loaded.splits) == {"train", "val", "test"}
    assert loaded.splits["train"].images.shape == (50, 1, 28, 28)
    assert loaded.splits["test"].images.shape == (12, 3, 28, 28)
    assert loaded.splits["val"].labels.shape == (60,)
    cfg = DataConfig(source=str(path), class_names=["normal", "pneumonia"], color_mode="grayscale")
    prepared = prepare_data(cfg)
    assert prepared.val_origin == "given" and prepared.classes == ["normal", "pneumonia"]
    assert len(prepared.train) == 50 and len(prepared.val) == 60


def test_tiny_given_val_is_merged_and_resplit(tmp_path):
    rng = np.random.default_rng(1)
    path = tmp_path / "tiny.npz"
    np.savez(
        path,
        train_images=rng.integers(0, 256, (200, 8, 8), dtype=np.uint8),
        train_labels=rng.integers(0, 2, 200),
        val_images=rng.integers(0, 256, (16, 8, 8), dtype=np.uint8),
        val_labels=rng.integers(0, 2, 16),
    )
    prepared = prepare_data(DataConfig(source=str(path), val_fraction=0.25))
    assert prepared.val_origin == "held-out"
    assert len(prepared.train) + len(prepared.val) == 216 and len(prepared.val) == 54


def test_npz_errors(tmp_path):
    bad = tmp_path / "x.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(CnnlabError, match="cannot read"):
        load_source(str(bad))
    np.savez(tmp_path / "y.npz", something=np.zeros(3))
    with pytest.raises(CnnlabError, match="holds no train_images"):
        load_source(str(tmp_path / "y.npz"))


def test_unknown_sources(tmp_path):
    with pytest.raises(CnnlabError, match="data path not found"):
        load_source(str(tmp_path / "missing"))
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(CnnlabError, match="unsupported data file"):
        load_source(str(tmp_path / "notes.txt"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(CnnlabError, match="no dataset found"):
        load_source(str(tmp_path / "empty"))


def test_resize_and_colour_on_load(idx_dir):
    loaded = load_source(str(idx_dir), "test", image_size=[32, 32], color_mode="rgb")
    assert loaded.splits["test"].images.shape == (200, 3, 32, 32)


def test_stratified_split_is_seeded_and_keeps_proportions():
    labels = torch.tensor([0] * 900 + [1] * 100)
    tr, va = stratified_split(labels, 0.1, seed=3)
    tr2, va2 = stratified_split(labels, 0.1, seed=3)
    assert torch.equal(va, va2) and torch.equal(tr, tr2)
    assert len(va) == 100 and int((labels[va] == 1).sum()) == 10
    assert set(tr.tolist()).isdisjoint(va.tolist()) and len(tr) + len(va) == 1000
    _, va3 = stratified_split(labels, 0.1, seed=4)
    assert not torch.equal(va, va3)


def test_grouped_split_keeps_patients_together():
    names = [f"person{i // 3}_bacteria_{i}.jpeg" for i in range(300)] + [
        f"IM-{i // 2:04d}-0001.jpeg" for i in range(100)
    ]
    labels = torch.tensor([1] * 300 + [0] * 100)
    groups = [patient_id(n) for n in names]
    tr, va = stratified_split(labels, 0.2, seed=0, groups=groups)
    train_groups = {groups[i] for i in tr.tolist()}
    val_groups = {groups[i] for i in va.tolist()}
    assert train_groups.isdisjoint(val_groups)
    assert 0.1 < len(va) / 400 < 0.3
    assert 0 < int((labels[va] == 0).sum()) < len(va)


def test_patient_ids_of_kermany_names():
    assert patient_id("IM-0115-0001.jpeg") == patient_id("IM-0115-0002.jpeg") == "im115"
    assert patient_id("NORMAL2-IM-1427-0001.jpeg") == "im1427"
    assert (
        patient_id("person1000_bacteria_2931.jpeg")
        == patient_id("person1000_virus_1681.jpeg")
        == "person1000"
    )
    assert patient_id("some/dir/other.png") == "other"


def test_prepare_holds_out_a_stratified_val(idx_dir):
    prepared = prepare_data(DataConfig(source=str(idx_dir), val_fraction=0.2))
    assert prepared.val_origin == "held-out"
    assert len(prepared.train) == 480 and len(prepared.val) == 120
    assert len(prepared.preprocess.mean) == 1 and 0 < prepared.preprocess.std[0] < 1
