"""The training loop: it learns, it is deterministic, resume continues bit for bit, callbacks work."""

import copy
import json

import pytest
import torch

from cnnlab.config import recipe_from_dict
from cnnlab.data import prepare_data
from cnnlab.errors import CnnlabError
from cnnlab.train.callbacks import Callback
from cnnlab.train.fit import fit
from cnnlab.train.optim import make_optimizer, make_scheduler
from cnnlab.train.run import build_model


def tiny_recipe(source, **train):
    return recipe_from_dict({
        "name": "tiny",
        "data": {"source": str(source), "val_fraction": 0.2},
        "model": {"name": "fastnet", "args": {"widths": [8, 16]}},
        "augment": {"horizontal_flip": True},
        "train": {"epochs": 3, "batch_size": 64, "optimizer": "sgd", "lr": 0.1, "schedule": "onecycle",
                  "threads": 1, **train},
    })  # fmt: skip


def run(recipe, out=None, resume=False, callbacks=None):
    data = prepare_data(recipe.data)
    model, _ = build_model(recipe, data)
    result = fit(model, data, recipe, out, resume=resume, progress=False, callbacks=callbacks)
    return model, result


def weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_it_learns_and_writes_history(idx_dir, tmp_path):
    model, result = run(tiny_recipe(idx_dir), tmp_path)
    assert result.history[-1]["val_accuracy"] > 0.9  # the toy classes are easy
    lines = (tmp_path / "history.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3]
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "checkpoint.pt").is_file()


def test_same_seed_same_weights_other_seed_different(idx_dir):
    a, _ = run(tiny_recipe(idx_dir, epochs=2))
    b, _ = run(tiny_recipe(idx_dir, epochs=2))
    c, _ = run(tiny_recipe(idx_dir, epochs=2, seed=1))
    assert same(weights(a), weights(b))
    assert not same(weights(a), weights(c))


class Interrupt(Callback):
    def on_epoch_end(self, state, row):
        if row["epoch"] == 2:
            raise KeyboardInterrupt


def test_resume_after_interruption_matches_an_uninterrupted_run(idx_dir, tmp_path):
    full, full_result = run(tiny_recipe(idx_dir, epochs=4), tmp_path / "full")
    with pytest.raises(KeyboardInterrupt):
        run(tiny_recipe(idx_dir, epochs=4), tmp_path / "cut", callbacks=[Interrupt()])
    resumed, result = run(tiny_recipe(idx_dir, epochs=4), tmp_path / "cut", resume=True)
    assert same(weights(full), weights(resumed))
    assert [r["epoch"] for r in result.history] == [1, 2, 3, 4]
    assert result.history[-1]["val_loss"] == full_result.history[-1]["val_loss"]


def test_early_stopping_restores_the_best_weights(idx_dir):
    class Record(Callback):
        def __init__(self):
            self.states = {}

        def on_epoch_end(self, state, row):
            self.states[row["epoch"]] = weights(state.model)

    rec = Record()
    recipe = tiny_recipe(
        idx_dir, epochs=6, early_stopping=1, schedule="constant", optimizer="adam", lr=0.5
    )
    model, result = run(recipe, callbacks=[rec])
    losses = {r["epoch"]: r["val_loss"] for r in result.history}
    best = min(losses, key=losses.get)
    last = result.history[-1]["epoch"]
    assert last == 6 or last - best == 1  # stopped one epoch (the patience) after the best
    assert same(weights(model), rec.states[best])


def test_early_stopping_counts_patience():
    from cnnlab.train.callbacks import EarlyStopping, FitState

    model = torch.nn.Linear(1, 1)
    state = FitState(model, None, None, epochs=10)
    stopper = EarlyStopping(patience=2, monitor="val_accuracy")
    for epoch, acc in enumerate([0.5, 0.7, 0.69, 0.7, 0.6], 1):
        stopper.on_epoch_end(state, {"epoch": epoch, "val_accuracy": acc})
        assert state.stop == (epoch == 4)
        if state.stop:
            break
    assert stopper.best == 0.7 and stopper.best_epoch == 2


@pytest.mark.parametrize("schedule", ["constant", "step", "cosine", "onecycle"])
def test_schedules(schedule):
    recipe = recipe_from_dict({"train": {"lr": 0.1, "epochs": 4, "schedule": schedule, "step_size": 2,
                                         "optimizer": "sgd"}})  # fmt: skip
    model = torch.nn.Linear(2, 2)
    opt = make_optimizer(model, recipe.train)
    sched = make_scheduler(opt, recipe.train, steps_per_epoch=10)
    lrs = []
    for _ in range(40):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    if schedule == "constant":
        assert set(lrs) == {0.1}
    elif schedule == "step":
        assert lrs[0] == lrs[19] == 0.1 and lrs[20] == pytest.approx(0.01)
    elif schedule == "cosine":
        assert lrs[0] == 0.1 and lrs[20] == pytest.approx(0.05) and lrs[-1] < 0.001
    else:
        peak = max(range(40), key=lambda i: lrs[i])
        assert (
            5 <= peak <= 15 and lrs[0] < 0.01 and lrs[-1] < 0.001 and max(lrs) == pytest.approx(0.1)
        )


def test_weight_decay_skips_biases_and_norms():
    recipe = recipe_from_dict({"train": {"weight_decay": 0.1, "optimizer": "adamw"}})
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))
    groups = make_optimizer(model, recipe.train).param_groups
    decayed = {id(p) for g in groups if g["weight_decay"] > 0 for p in g["params"]}
    assert decayed == {id(model[0].weight)}


def test_binary_class_weights_and_frozen_models(idx_dir):
    from cnnlab.train.losses import make_loss

    data = prepare_data(tiny_recipe(idx_dir).data)
    two = data.train.subset(torch.nonzero(data.train.labels < 2).flatten())
    two.classes = ["a", "b"]
    loss, how = make_loss(recipe_from_dict({"train": {"class_weight": "auto"}}).train, True, two)
    counts = torch.bincount(two.labels)
    assert how.startswith("pos_weight=") and loss.pos_weight.item() == pytest.approx(
        float(counts[0] / counts[1]), rel=1e-4
    )
    logits = torch.tensor([[2.0], [-2.0]])
    assert loss(logits, torch.tensor([1, 0])).item() < loss(logits, torch.tensor([0, 1])).item()


def test_without_early_stopping_the_last_epoch_is_kept(idx_dir):
    class Record(Callback):
        def on_epoch_end(self, state, row):
            self.last = weights(state.model)

    rec = Record()
    model, _ = run(
        tiny_recipe(idx_dir, epochs=2, schedule="constant", optimizer="adam", lr=0.5),
        callbacks=[rec],
    )
    assert same(weights(model), rec.last)


@pytest.mark.parametrize("total", [1, 2, 3])
def test_onecycle_on_a_handful_of_steps(total):
    recipe = recipe_from_dict({"train": {"lr": 0.1, "epochs": 1, "schedule": "onecycle"}})
    opt = make_optimizer(torch.nn.Linear(2, 2), recipe.train)
    sched = make_scheduler(opt, recipe.train, steps_per_epoch=total)
    lrs = []
    for _ in range(total):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert all(0 < lr <= 0.1 for lr in lrs)


def test_validation_freq_validates_every_nth_and_the_last_epoch(idx_dir, tmp_path):
    _, result = run(tiny_recipe(idx_dir, epochs=5, validation_freq=2), tmp_path)
    assert ["val_accuracy" in r for r in result.history] == [False, True, False, True, True]
    assert (tmp_path / "curves.png").stat().st_size > 0
    with pytest.raises(CnnlabError, match="validation_freq"):
        tiny_recipe(idx_dir, validation_freq=2, early_stopping=3)
    with pytest.raises(CnnlabError, match="validation_freq"):
        tiny_recipe(idx_dir, validation_freq=-1)
    (tmp_path / "none").mkdir()
    _, result = run(tiny_recipe(idx_dir, epochs=2, validation_freq=0), tmp_path / "none")
    assert not any("val_accuracy" in r for r in result.history)  # none while training


def test_weight_average_is_the_moving_average_of_every_step(idx_dir, tmp_path):
    """train.ema: the bundle's weights are the per-step average, computed here by hand from the
    weights after each step; a resumed run averages exactly as an uninterrupted one."""

    class EveryStep(Callback):
        def __init__(self):
            self.seen = []

        def on_step_end(self, state, row, position):
            self.seen.append(weights(state.model))

    rec = EveryStep()
    recipe = tiny_recipe(idx_dir, epochs=2, ema=0.9)
    model, _ = run(recipe, callbacks=[rec])
    start = weights(build_model(recipe, prepare_data(recipe.data))[0])
    expected = {k: v.clone() for k, v in start.items()}
    for k_step, w in enumerate(rec.seen, start=1):
        d = min(0.9, (1 + k_step) / (10 + k_step))
        for k, v in w.items():
            expected[k] = expected[k] * d + v * (1 - d) if v.is_floating_point() else v.clone()
    final = weights(model)
    assert not same(final, rec.seen[-1])  # not the last step's weights ...
    for k, v in final.items():  # ... but their average
        torch.testing.assert_close(v, expected[k], rtol=1e-5, atol=1e-6)
    full, _ = run(tiny_recipe(idx_dir, epochs=3, ema=0.9), tmp_path / "full")
    with pytest.raises(KeyboardInterrupt):
        run(tiny_recipe(idx_dir, epochs=3, ema=0.9), tmp_path / "cut", callbacks=[Interrupt()])
    resumed, _ = run(tiny_recipe(idx_dir, epochs=3, ema=0.9), tmp_path / "cut", resume=True)
    assert same(weights(full), weights(resumed))
    with pytest.raises(CnnlabError, match="ema and train.early_stopping"):
        tiny_recipe(idx_dir, ema=0.99, early_stopping=2)
    with pytest.raises(CnnlabError, match="train.ema must be in"):
        tiny_recipe(idx_dir, ema=1.0)


def test_lookahead_pulls_the_weights_back_to_a_slow_average():
    """airbench's lookahead by hand: nothing before 30% of the steps; then every 5th step the
    slow copy moves (1 - rho) of the way to the weights, rho = 0.95^5 * progress^3, and the
    weights go back to it; at the epoch's end the model holds the slow weights."""
    from cnnlab.train.callbacks import FitState, Lookahead

    model = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.zero_()
    state = FitState(model, None, None, epochs=1)
    state.total_steps = 20
    look, slow, seen = Lookahead(), None, []
    for k in range(1, 21):
        with torch.no_grad():
            model.weight += 1.0  # a training step
        fast = float(model.weight.detach())
        state.step = k
        look.on_step_end(state, None, (lambda: {}) if k < 20 else None)  # 20: the epoch's last
        if k >= 6 and k % 5 == 0:
            if slow is None:
                slow = fast
            else:
                rho = 0.95**5 * (k / 20) ** 3
                slow += (1 - rho) * (fast - slow)
            fast = slow
        seen.append(float(model.weight.detach()))
        assert float(model.weight.detach()) == pytest.approx(fast)
    assert seen[:9] == [float(k) for k in range(1, 10)]  # untouched before step 10
    assert seen[9] == 10.0 and seen[14] < 15.0  # the snapshot, then the first pull back
    restored = Lookahead()
    restored.load_state_dict(look.state_dict())
    assert torch.equal(restored.slow["weight"], look.slow["weight"])


def test_lookahead_trains_and_resumes_exactly(idx_dir, tmp_path):
    plain, _ = run(tiny_recipe(idx_dir, epochs=3))
    full, result = run(tiny_recipe(idx_dir, epochs=3, lookahead=True), tmp_path / "full")
    assert result.history[-1]["val_accuracy"] > 0.9
    assert not same(weights(plain), weights(full))
    with pytest.raises(KeyboardInterrupt):
        run(
            tiny_recipe(idx_dir, epochs=3, lookahead=True),
            tmp_path / "cut",
            callbacks=[Interrupt()],
        )
    resumed, _ = run(tiny_recipe(idx_dir, epochs=3, lookahead=True), tmp_path / "cut", resume=True)
    assert same(weights(full), weights(resumed))


def test_bias_lr_scale_raises_only_the_norm_parameters():
    recipe = recipe_from_dict({"train": {"lr": 0.1, "bias_lr_scale": 64, "optimizer": "sgd",
                                         "weight_decay": 0.01}})  # fmt: skip
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2),
                                torch.nn.Flatten(), torch.nn.Linear(2, 3))  # fmt: skip
    model[1].weight.requires_grad_(False)  # a frozen norm scale stays out of every group
    lr = {id(p): g["lr"] for g in make_optimizer(model, recipe.train).param_groups
          for p in g["params"]}  # fmt: skip
    assert lr[id(model[1].bias)] == pytest.approx(6.4)
    others = [model[0].weight, model[0].bias, model[3].weight, model[3].bias]
    assert [lr[id(p)] for p in others] == [0.1] * 4
    assert id(model[1].weight) not in lr
    with pytest.raises(CnnlabError, match="bias_lr_scale must be positive"):
        recipe_from_dict({"train": {"bias_lr_scale": 0}})


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw"])
def test_optimisers_update_all_parameters_in_one_fused_kernel(name):
    """fused=True on a CPU, and the same update as PyTorch's per-tensor loop."""
    recipe = recipe_from_dict({"train": {"lr": 0.05, "optimizer": name, "weight_decay": 0.01}})
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.Flatten(), torch.nn.Linear(8, 3))
    reference = copy.deepcopy(model)
    opt = make_optimizer(model, recipe.train)
    assert opt.defaults["fused"] is True
    twin = dict(zip(map(id, model.parameters()), reference.parameters(), strict=True))
    groups = [{**g, "params": [twin[id(p)] for p in g["params"]], "fused": None, "foreach": False}
              for g in opt.param_groups]  # fmt: skip
    ref = type(opt)(groups, lr=recipe.train.lr)
    x = torch.randn(4, 1, 4, 4)
    for _ in range(3):
        for m, o in ((model, opt), (reference, ref)):
            o.zero_grad()
            m(x).square().sum().backward()
            o.step()
    for p, q in zip(model.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(p, q)


def test_a_pytorch_without_the_fused_kernel_gets_the_per_tensor_optimiser(monkeypatch):
    from cnnlab.train import optim

    class NoFused(torch.optim.SGD):  # as PyTorch answers where a device has no fused kernel
        def __init__(self, params, fused=None, **kw):
            if fused:
                raise RuntimeError("`fused=True` needs params on supported devices")
            super().__init__(params, **kw)

    monkeypatch.setitem(optim._OPTIMIZERS, "sgd", NoFused)
    recipe = recipe_from_dict({"train": {"lr": 0.05, "optimizer": "sgd", "nesterov": True}})
    opt = make_optimizer(torch.nn.Linear(3, 2), recipe.train)
    assert isinstance(opt, NoFused) and not opt.defaults["fused"]
    assert opt.defaults["nesterov"] is True and opt.defaults["lr"] == 0.05


def test_muon_trains_and_resumes_exactly(idx_dir, tmp_path):
    """The momentum of the filters lives in the optimiser's state, so a checkpoint carries it."""
    recipe = lambda: tiny_recipe(idx_dir, epochs=3, optimizer="muon", nesterov=True)  # noqa: E731
    full, result = run(recipe(), tmp_path / "full")
    assert result.history[-1]["val_accuracy"] > 0.9
    with pytest.raises(KeyboardInterrupt):
        run(recipe(), tmp_path / "cut", callbacks=[Interrupt()])
    resumed, _ = run(recipe(), tmp_path / "cut", resume=True)
    assert same(weights(full), weights(resumed))


def test_muon_orthogonalises_the_filters_and_steps_the_rest_as_sgd():
    recipe = recipe_from_dict({"train": {"optimizer": "muon", "lr": 0.05, "momentum": 0.9,
                                         "nesterov": True, "weight_decay": 0.01,
                                         "muon_lr": 0.2}})  # fmt: skip
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3), torch.nn.BatchNorm2d(16),
                                torch.nn.Flatten(), torch.nn.Linear(16 * 4 * 4, 3))  # fmt: skip
    reference = copy.deepcopy(model)
    opt = make_optimizer(model, recipe.train)
    conv = model[0].weight
    filters = [g for g in opt.param_groups if "muon_momentum" in g]
    assert [g["params"] for g in filters] == [[conv]] and filters[0]["lr"] == 0.2
    assert opt.param_groups[0]["lr"] == 0.05  # what the log prints stays the recipe's lr
    r = reference
    ref = torch.optim.SGD([{"params": [r[3].weight]},
                           {"params": [r[0].bias, r[1].weight, r[1].bias, r[3].bias],
                            "weight_decay": 0.0}],
                          lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01)  # fmt: skip
    x = torch.randn(8, 3, 6, 6)
    for step in range(3):
        before = conv.detach().clone()
        for m, o in ((model, opt), (reference, ref)):
            o.zero_grad()
            m(x).square().mean().backward()
        grad = conv.grad.flatten(1).clone()
        opt.step()
        ref.step()
        update = torch.linalg.svdvals((before - conv.detach()).flatten(1) / 0.2)
        assert update.min() > 0.5 and update.max() < 1.5, update  # all directions move alike
        if step == 0:  # which the raw gradient does not; the rest took SGD's step
            spread = torch.linalg.svdvals(grad)
            assert spread.max() > 3 * spread.min()
            for name, p in model.named_parameters():
                if name != "0.weight":
                    torch.testing.assert_close(p, dict(reference.named_parameters())[name])


@pytest.mark.parametrize("shape", [(16, 27), (40, 8)])
def test_orthogonalise_approximates_u_v_transposed(shape):
    from cnnlab.train.optim import orthogonalise

    torch.manual_seed(0)
    m = torch.randn(shape) @ torch.diag(torch.logspace(0, 2, shape[1]))  # singular values 1-100
    u, _, vh = torch.linalg.svd(m, full_matrices=False)
    o = orthogonalise(m)
    assert o.shape == m.shape
    cosine = (o * (u @ vh)).sum() / (o.norm() * (u @ vh).norm())
    assert cosine > 0.95
    s = torch.linalg.svdvals(o)
    assert s.min() > 0.5 and s.max() < 1.3


def test_muon_settings_are_checked():
    with pytest.raises(CnnlabError, match="muon_lr must be positive"):
        recipe_from_dict({"train": {"optimizer": "muon", "muon_lr": 0}})


class Snapshot(Callback):
    """The weights and which parameters train, as they stood after each epoch."""

    def __init__(self):
        self.after = {}

    def on_epoch_end(self, state, row):
        trainable = {n for n, p in state.model.named_parameters() if p.requires_grad}
        self.after[state.epoch] = (weights(state.model), trainable)


def test_freeze_after_stops_a_layer_and_those_before_it_then_thaws_them(idx_dir):
    snap = Snapshot()
    model, _ = run(tiny_recipe(idx_dir, freeze_after={"stage1": 1}), callbacks=[snap])
    first = [n for n in snap.after[1][0] if n.startswith("features.stage1")]
    later = [n for n in snap.after[1][0] if n.startswith("features.stage2_conv")]
    assert first and later
    for n in first:  # frozen after epoch 1: no step, no weight decay, BatchNorm's statistics move
        if "running" not in n and "num_batches" not in n:
            assert torch.equal(snap.after[1][0][n], snap.after[3][0][n]), n
    assert all(not torch.equal(snap.after[1][0][n], snap.after[3][0][n]) for n in later)
    assert not any(n.startswith("features.stage1") for n in snap.after[2][1])
    assert "features.stage2_conv1.weight" in snap.after[2][1]
    assert all(p.requires_grad for p in model.parameters())  # trainable again at the end


def test_freeze_after_resumes_frozen(idx_dir, tmp_path):
    recipe = lambda: tiny_recipe(idx_dir, epochs=4, freeze_after={"stage1": 1})  # noqa: E731
    full, _ = run(recipe(), tmp_path / "full")
    with pytest.raises(KeyboardInterrupt):
        run(recipe(), tmp_path / "cut", callbacks=[Interrupt()])
    resumed, _ = run(recipe(), tmp_path / "cut", resume=True)
    assert same(weights(full), weights(resumed))
    plain, _ = run(tiny_recipe(idx_dir, epochs=4))
    assert not same(weights(full), weights(plain))


@pytest.mark.parametrize(
    ("plan", "message"),
    [
        ({"stage1": 0}, "must be at least 1"),
        ({"stage1": "late"}, "maps layer names to epochs"),
        ({"stage1": True}, "maps layer names to epochs"),
    ],
)
def test_freeze_after_settings_are_checked(idx_dir, plan, message):
    with pytest.raises(CnnlabError, match=message):
        tiny_recipe(idx_dir, freeze_after=plan)


def test_freeze_after_an_unknown_layer_names_the_models(idx_dir):
    with pytest.raises(CnnlabError, match="no trainable layer is called 'stage9'.*stage1_conv1"):
        run(tiny_recipe(idx_dir, freeze_after={"stage9": 1}))


def test_freeze_after_the_whole_run_never_freezes_and_says_so(idx_dir, caplog):
    """A recipe shortened with --set train.epochs=N still trains; its late freezing is logged
    as not applying rather than refused."""
    snap = Snapshot()
    with caplog.at_level("INFO", logger="cnnlab"):
        run(tiny_recipe(idx_dir, epochs=2, freeze_after={"stage1": 2}), callbacks=[snap])
    assert "features.stage1_conv1.weight" in snap.after[2][1]
    assert "train.freeze_after.stage1: 2 epochs is the whole run" in caplog.text


def test_the_recipe_lists_its_callbacks(idx_dir, tmp_path):
    """train.callbacks: by default every callback whose setting asks for it (today's runs); a
    name left out turns its callback off whatever its setting says, and a name cnnlab does not
    know is refused naming the ones it does."""
    default = tiny_recipe(idx_dir, epochs=2).train.callbacks
    assert set(default) == {"early_stopping", "lookahead", "ema", "freeze_after", "checkpoint",
                            "tensorboard"}  # fmt: skip
    plain, _ = run(tiny_recipe(idx_dir, epochs=2), tmp_path / "plain")
    averaged, _ = run(tiny_recipe(idx_dir, epochs=2, ema=0.9), tmp_path / "ema")
    listed, _ = run(tiny_recipe(idx_dir, epochs=2, ema=0.9, callbacks=["tensorboard"]),
                    tmp_path / "listed")  # fmt: skip
    assert not same(weights(plain), weights(averaged))
    assert same(weights(plain), weights(listed))  # ema is set, but not listed
    assert (tmp_path / "ema" / "checkpoint.pt").is_file()
    assert not (tmp_path / "listed" / "checkpoint.pt").exists()
    assert (tmp_path / "listed" / "history.jsonl").is_file()  # the run's record, always
    with pytest.raises(CnnlabError, match="train.callbacks") as refused:
        tiny_recipe(idx_dir, callbacks=["tensorbord"])
    assert "tensorboard" in str(refused.value)
