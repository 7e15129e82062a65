"""Skipping well-learned images (train.prune_easy): which are skipped, how the rest are weighted,
and that a pruned run still learns, repeats itself and resumes bit for bit."""

import pytest
import torch

from cnnlab.errors import CnnlabError
from cnnlab.train.callbacks import Callback
from cnnlab.train.optim import make_scheduler
from cnnlab.train.pruning import EasySamplePruning

from .test_fit import Interrupt, run, same, tiny_recipe, weights


def test_the_first_and_the_last_eighth_of_the_epochs_see_every_image():
    p = EasySamplePruning(1000, 0.3, 16, torch.device("cpu"))
    assert [p.prunes(e) for e in range(16)] == [False] + [True] * 13 + [False, False]
    assert [p.size(e) for e in (0, 1, 14)] == [1000, 700, 1000]
    assert not EasySamplePruning(1000, 0.3, 1, torch.device("cpu")).prunes(0)
    assert [EasySamplePruning(100, 0.3, 3, torch.device("cpu")).prunes(e) for e in range(3)] == [
        False, True, False]  # fmt: skip


def test_only_low_loss_images_are_skipped_and_their_kept_peers_count_double():
    n = 1000
    p = EasySamplePruning(n, 0.3, 8, torch.device("cpu"))
    p.record(torch.arange(n), torch.arange(n, dtype=torch.float32))  # loss i for image i
    order, w = p.plan(1, torch.Generator().manual_seed(0))
    assert len(order) == 700 and len(set(order.tolist())) == 700  # a shuffle, no repeats
    kept = set(order.tolist())
    assert set(range(600, n)) <= kept  # the 40% with the highest losses are all kept
    assert len(set(range(600)) - kept) == 300  # the skipped come from the easiest 60%
    assert torch.all(w[:600] == 2.0) and torch.all(w[600:] == 1.0)
    # every easy image has its chance: another epoch skips another draw
    order2, _ = p.plan(2, torch.Generator().manual_seed(1))
    assert set(order2.tolist()) != kept
    full, none = p.plan(0, torch.Generator().manual_seed(0))
    assert none is None and sorted(full.tolist()) == list(range(n))


def test_scheduler_takes_the_steps_of_each_epoch():
    recipe = tiny_recipe("x", epochs=3, schedule="step", step_size=1, gamma=0.5)
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    sched = make_scheduler(opt, recipe.train, [4, 2, 4])
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == [1.0] * 4 + [0.5] * 2 + [0.25] * 4


def test_a_pruned_run_learns_in_fewer_steps_and_repeats_itself(idx_dir):
    class Steps(Callback):
        def on_train_end(self, state):
            self.taken = state.scheduler.last_epoch  # the scheduler steps once per batch

    pruned, full = Steps(), Steps()
    model, result = run(tiny_recipe(idx_dir, epochs=4, prune_easy=0.5), callbacks=[pruned])
    assert result.history[-1]["val_accuracy"] > 0.9
    plain, _ = run(tiny_recipe(idx_dir, epochs=4), callbacks=[full])
    assert pruned.taken < full.taken * 0.8  # epochs 2 and 3 of 4 take half the steps
    assert not same(weights(model), weights(plain))
    again, _ = run(tiny_recipe(idx_dir, epochs=4, prune_easy=0.5))
    assert same(weights(model), weights(again))


def test_a_pruned_run_resumes_bit_for_bit(idx_dir, tmp_path):
    recipe = lambda: tiny_recipe(idx_dir, epochs=4, prune_easy=0.4)  # noqa: E731
    full, _ = run(recipe(), tmp_path / "full")
    with pytest.raises(KeyboardInterrupt):
        run(recipe(), tmp_path / "cut", callbacks=[Interrupt()])
    resumed, _ = run(recipe(), tmp_path / "cut", resume=True)
    assert same(weights(full), weights(resumed))  # the remembered losses travel in the checkpoint


@pytest.mark.parametrize("value", [-0.1, 0.6])
def test_prune_easy_out_of_range_is_refused(value):
    with pytest.raises(CnnlabError, match="prune_easy must be in"):
        tiny_recipe("x", prune_easy=value)
