"""Recipe values that would allocate or spawn without end are refused at load, naming the key
and its bound (`threads: 100000` started threads until it failed; `epochs` sized lists); thread
and worker counts are also held to the machine at run time."""

from __future__ import annotations

import pytest
import torch

from cnnlab.config import recipe_from_dict
from cnnlab.errors import CnnlabError


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"train": {"threads": 100_000}}, "train.threads must be at most 1,024, got 100000"),
        ({"train": {"batch_size": 10**7}}, "train.batch_size must be at most 65,536, got 10000000"),
        ({"train": {"eval_batch_size": 10**6}}, "train.eval_batch_size must be at most 65,536"),
        ({"finetune": {"batch_size": 10**6}}, "finetune.batch_size must be at most 65,536"),
        ({"train": {"epochs": 10**9}}, "train.epochs must be at most 10,000, got 1000000000"),
        ({"finetune": {"epochs": 10**9}}, "finetune.epochs must be at most 10,000"),
        ({"train": {"step_size": 10**12}}, "train.step_size must be at most 10,000"),
        ({"train": {"early_stopping": 10**12}}, "train.early_stopping must be at most 10,000"),
        ({"train": {"validation_freq": 10**12}}, "train.validation_freq must be at most 10,000"),
        ({"augment": {"random_crop": 10**6}}, "augment.random_crop must be at most 1,024"),
        ({"augment": {"cutout": 10**6}}, "augment.cutout must be at most 4,096"),
        ({"train": {"seed": 10**30}}, "train.seed must be from 0 to 4,294,967,295"),
        ({"train": {"seed": -1}}, "train.seed must be from 0 to 4,294,967,295"),
        ({"data": {"split_seed": 2**40}}, "data.split_seed must be from 0 to 4,294,967,295"),
        ({"train": {"freeze_after": {"conv1": 10**12}}}, "train.freeze_after.conv1 must be at most 10,000"),
    ],
)  # fmt: skip
def test_sizes_counts_and_seeds_are_bounded_at_load(raw, message):
    with pytest.raises(CnnlabError) as e:
        recipe_from_dict(raw)
    assert message in str(e.value)


def test_the_bounds_leave_real_recipes_alone():
    recipe_from_dict({"train": {"threads": 64, "batch_size": 4096, "epochs": 1000, "seed": 2**31},
                      "data": {"image_size": [1024, 1024]}, "augment": {"random_crop": 4}})  # fmt: skip


def test_more_threads_than_the_machine_can_use_are_held_to_four_per_core(caplog):
    from cnnlab.runtime.device import set_threads

    before = torch.get_num_threads()
    try:
        cores = len(__import__("os").sched_getaffinity(0))
        assert set_threads(1000) == min(1000, 4 * cores)
        assert torch.get_num_threads() == min(1000, 4 * cores)
        assert "train.threads 1000" in caplog.text or 4 * cores >= 1000
    finally:
        torch.set_num_threads(before)


def test_decode_workers_are_held_to_four_per_core(monkeypatch):
    from cnnlab.data import decode

    asked = []

    def fake_executor(backend, workers):
        asked.append(workers)
        from concurrent.futures import ThreadPoolExecutor

        return ThreadPoolExecutor(1)

    monkeypatch.setattr(decode, "_executor", fake_executor)
    items = list(range(decode.PARALLEL_FROM + 10))
    out = list(decode.parallel_map(abs, items, (), workers=100_000))
    assert out == items and asked and asked[0] <= 4 * decode.available_cpus()


@pytest.mark.parametrize("batch", [0, -5, 10**9])
def test_evaluate_batch_size_is_bounded_before_the_data_is_read(batch):
    from cnnlab.evaluate.scores import evaluate_bundle

    with pytest.raises(CnnlabError, match=f"--batch-size must be from 1 to 65,536, got {batch}"):
        evaluate_bundle(None, "/nonexistent", batch_size=batch)
