"""The real MNIST training set in ../shared/data: it loads as the brief describes, and it trains."""

import torch

from cnnlab.config import recipe_from_dict
from cnnlab.data import load_source, prepare_data
from cnnlab.train.fit import fit
from cnnlab.train.run import build_model
from tests.conftest import shared_path


def test_real_mnist_loads():
    loaded = load_source(str(shared_path("mnist")), "train")
    train = loaded.splits["train"]
    assert train.images.shape == (60_000, 1, 28, 28) and train.images.dtype == torch.uint8
    counts = torch.bincount(train.labels)
    assert (
        counts.tolist()[1] == 6742 and int(counts.sum()) == 60_000
    )  # the known MNIST digit counts
    assert 30 < float(train.images.float().mean()) < 35  # mean intensity 33.3


def test_a_few_seconds_of_training_on_real_digits():
    torch.set_num_threads(1)
    recipe = recipe_from_dict({
        "data": {"source": str(shared_path("mnist")), "val_fraction": 0.1},
        "model": {"name": "fastnet", "args": {"widths": [8, 16]}},
        "train": {"epochs": 1, "batch_size": 128, "optimizer": "sgd", "nesterov": True, "lr": 0.2,
                  "schedule": "onecycle", "threads": 1},
    })  # fmt: skip
    data = prepare_data(recipe.data)
    assert len(data.train) == 54_000 and len(data.val) == 6_000
    data.train = data.train.subset(torch.arange(0, 54_000, 6))  # 9,000 images keep the test short
    model, _ = build_model(recipe, data)
    result = fit(model, data, recipe, progress=False)
    assert result.history[-1]["val_accuracy"] > 0.95
