"""runtime.taps: hooks that act for their caller only, and eval mode that leaves a shared model
alone. (tests/runtime/test_shared_model.py runs the features built on them from 8 threads.)"""

from __future__ import annotations

import re
import threading
from pathlib import Path

import torch
import torch.nn as nn

from cnnlab.runtime.taps import evaluating, hooked, tapped

SRC = Path(__file__).resolve().parents[2] / "src" / "cnnlab"


def test_a_tap_sees_its_own_threads_passes_only():
    model = nn.Sequential(nn.Linear(2, 2), nn.ReLU())
    seen: list[str] = []
    inside, done = threading.Event(), threading.Event()

    def other() -> None:
        inside.wait()
        model(torch.ones(1, 2))  # another caller's pass while the tap is open
        done.set()

    thread = threading.Thread(target=other)
    thread.start()
    with tapped(post=[(model[0], lambda m, a, out: seen.append("mine"))]):
        inside.set()
        done.wait()
        assert seen == []
        model(torch.ones(1, 2))
    thread.join()
    assert seen == ["mine"]
    assert not model[0]._forward_hooks  # removed on leaving


def test_hooked_names_calls_and_replaces_outputs():
    relu = nn.ReLU()
    model = nn.Sequential(nn.Linear(2, 2), relu, nn.Linear(2, 2), relu)
    got = {}

    def keep(name: str, out: torch.Tensor) -> torch.Tensor:
        got[name] = out
        return torch.zeros_like(out) if name == "1#2" else None

    with hooked(model, ["1", "1#2"], keep):
        y = model(torch.ones(1, 2))
    assert set(got) == {"1", "1#2"} and torch.equal(y, torch.zeros(1, 2))
    inputs = {}
    with hooked(model, ["2"], lambda name, t: inputs.setdefault(name, t), inputs=True):
        model(torch.ones(1, 2))
    assert torch.equal(inputs["2"], got["1"])


class Watched(nn.Module):
    """Fails if anything switches its mode: a stand-in for a model other callers are running."""

    def __init__(self) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(2)

    def train(self, mode: bool = True):
        raise AssertionError("a shared model's mode was switched")


def test_evaluating_leaves_an_eval_model_alone_and_restores_a_training_one():
    shared = Watched()
    nn.Module.train(shared, False)
    with evaluating(shared):
        pass
    trained = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2), nn.Dropout())
    trained[1].eval()  # a frozen stage's BatchNorm stays in eval while the rest trains
    with evaluating(trained):
        assert not any(m.training for m in trained.modules())
    assert [m.training for m in trained.modules()] == [True, True, False, True]


# where a model's mode may switch: training's own model; a bundle's while it loads, before
# anyone shares it; a copy being exported; the text of generated scripts
MODE_SWITCHES_ALLOWED = ("train/", "bundle/loading.py", "bundle/check.py", "deploy/", "learn/code_")
# models that live and die inside one call, never shared: the size check's meta-device build
PRIVATE_MODELS = ("models/footprint.py",)


def test_only_runtime_taps_registers_hooks_and_only_training_switches_modes():
    """One capture mechanism: a hook or a mode switch anywhere else would be state on a model
    that concurrent callers share."""
    hooks, modes = [], []
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC).as_posix()
        for i, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if re.search(r"register_(module_)?forward(_pre)?_hook\(", code):
                hooks.append(f"{rel}:{i}")
            if re.search(r"\bmodel\.(train\(|eval\(\))", code):
                modes.append(f"{rel}:{i}")
    assert {h.split(":")[0] for h in hooks} - set(PRIVATE_MODELS) == {"runtime/taps.py"}
    allowed = MODE_SWITCHES_ALLOWED + PRIVATE_MODELS + ("runtime/taps.py",)
    assert [m for m in modes if not m.startswith(allowed)] == []
