"""The optimiser and the learning-rate schedule a recipe's train section asks for."""

from __future__ import annotations

import bisect
import itertools
import math

import torch
import torch.nn as nn

from cnnlab.config import TrainConfig
from cnnlab.errors import CnnlabError


def make_optimizer(model: nn.Module, t: TrainConfig) -> torch.optim.Optimizer:
    """Weight decay on weights only (not biases or norm parameters); the norm parameters learn
    at `lr * bias_lr_scale`. Models may offer their own parameter groups (discriminative
    learning rates) through `param_groups(lr)`."""
    if hasattr(model, "param_groups"):
        groups = model.param_groups(t.lr)
    else:
        norms = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)
        raised = set()  # ids of the norm layers' parameters, when their rate is raised
        if t.bias_lr_scale != 1:
            raised = {id(p) for m in model.modules() if isinstance(m, norms)
                      for p in m.parameters(False)}  # fmt: skip
        params = [p for p in model.parameters() if p.requires_grad]
        decay = [p for p in params if p.ndim > 1]
        scaled = [p for p in params if p.ndim <= 1 and id(p) in raised]
        no_decay = [p for p in params if p.ndim <= 1 and id(p) not in raised]
        groups = [
            {"params": decay},
            {"params": no_decay, "weight_decay": 0.0},
            {"params": scaled, "weight_decay": 0.0, "lr": t.lr * t.bias_lr_scale},
        ]
    groups = [g for g in groups if g["params"]]
    if not groups:
        raise CnnlabError("the model has no trainable parameters (is everything frozen?)")
    # one fused kernel for all parameters: on a CPU PyTorch otherwise updates them one tensor at a
    # time (Adam on keras_cifar10_cnn's 1.25M parameters, 2 AVX2 cores: 6.0 -> 1.1 ms a step)
    params = [p for g in groups for p in g["params"]]
    fused = all(p.device.type in ("cpu", "cuda") and p.dtype in _FUSED_DTYPES for p in params)
    kind = _OPTIMIZERS[t.optimizer]
    kw = {"lr": t.lr, "weight_decay": t.weight_decay}
    if t.optimizer in ("sgd", "muon"):
        kw |= {"momentum": t.momentum, "nesterov": t.nesterov}
    if t.optimizer == "muon":
        groups = Muon.split(groups, t)
    try:
        return kind(groups, fused=fused or None, **kw)
    except RuntimeError:  # a PyTorch (torch>=2.4 is allowed) without this device's fused kernel
        return kind(groups, **kw)


class Muon(torch.optim.SGD):
    """Muon (Keller Jordan, 2024) for conv filters, SGD for everything else (both with the
    recipe's momentum and nesterov).

    A filter bank's update is its (Nesterov) momentum made orthogonal, all singular values near 1
    (a Newton-Schulz iteration), so every direction the filters can move in moves: fewer epochs
    to the same accuracy (airbench's CIFAR-10 record; fashion_mnist_94: 94% in 7 epochs where
    SGD needs 10). Done by handing SGD that update as the gradient, in groups that SGD steps
    plainly (no momentum or decay of its own), so one fused SGD kernel still updates all.
    torch.optim.Muon (torch>=2.9, where cnnlab allows 2.4) takes 2D matrices only.
    """

    def __init__(self, params, **kw) -> None:
        super().__init__(params, **kw)
        self._step_supports_amp_scaling = False  # GradScaler unscales before the orthogonalising

    @staticmethod
    def split(groups: list[dict], t: TrainConfig) -> list[dict]:
        """Each group's conv filters move to a Muon group after it, at `muon_lr` (times the
        group's own factor on `lr`, for discriminative rates)."""
        plain, muon = [], []
        for g in groups:
            filters = [p for p in g["params"] if p.ndim >= 3]
            rest = [p for p in g["params"] if p.ndim < 3]
            plain.append({**g, "params": rest})
            factor = g.get("lr", t.lr) / t.lr
            muon.append({**g, "params": filters, "lr": t.muon_lr * factor, "momentum": 0.0,
                         "muon_momentum": t.momentum, "nesterov": False, "weight_decay": 0.0})  # fmt: skip
        return [g for g in plain + muon if g["params"]]

    @torch.no_grad()
    def step(self, closure=None):
        for g in self.param_groups:
            if "muon_momentum" not in g:
                continue
            mu = g["muon_momentum"]
            for p in g["params"]:
                if p.grad is None:
                    continue
                buf = self.state[p].get("muon_buffer")
                if buf is None:
                    buf = self.state[p]["muon_buffer"] = p.grad.clone()
                else:
                    buf.mul_(mu).add_(p.grad)
                update = p.grad.add(buf, alpha=mu) if self.defaults["nesterov"] else buf
                p.grad.copy_(orthogonalise(update.flatten(1)).view(p.shape))
        return super().step(closure)


def orthogonalise(m: torch.Tensor, steps: int = 5) -> torch.Tensor:
    """U V^T of m = U S V^T, roughly: the quintic Newton-Schulz iteration of Muon, whose
    coefficients trade exactness (singular values end up in about 0.7-1.2) for few steps."""
    a, b, c = 3.4445, -4.7750, 2.0315
    x = m.float()
    x = x / (x.norm() + 1e-7)  # every singular value <= 1
    wide = x.shape[0] <= x.shape[1]
    x = x if wide else x.T
    for _ in range(steps):  # x <- a x + (b G + c G^2) x, G = x x^T, in two fused multiply-adds
        gram = x @ x.T
        x = torch.addmm(x, torch.addmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return (x if wide else x.T).to(m.dtype)


_OPTIMIZERS = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW,
               "muon": Muon}  # fmt: skip
_FUSED_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


def make_scheduler(opt: torch.optim.Optimizer, t: TrainConfig, steps_per_epoch: int | list[int]):
    """Stepped once per batch; `step` decays every `step_size` epochs. `steps_per_epoch` is one
    count for every epoch, or a list of them (epochs that skip images take fewer steps).

    onecycle follows OneCycleLR's learning-rate curve (cosine rise from lr/25 over
    `warmup_fraction` of the steps, cosine fall to lr/25e4), written as a multiplier so it
    also works for runs of a handful of steps, where OneCycleLR divides by zero.
    """
    per_epoch = (
        [steps_per_epoch] * t.epochs if isinstance(steps_per_epoch, int) else list(steps_per_epoch)
    )
    ends = list(itertools.accumulate(per_epoch))  # the step at which each epoch ends
    total = max(1, ends[-1] if ends else 0)
    if t.schedule == "onecycle":
        warm = max(1, round(t.warmup_fraction * total))
        low, final = 1 / 25, 1 / 25e4

        def fn(s: int) -> float:
            if s < warm:
                return low + (1 - low) * (1 - math.cos(math.pi * s / warm)) / 2
            p = min(1.0, (s - warm) / max(1, total - warm))
            return final + (1 - final) * (1 + math.cos(math.pi * p)) / 2

    elif t.schedule == "cosine":
        fn = lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total))  # noqa: E731
    elif t.schedule == "step":
        fn = lambda s: t.gamma ** (bisect.bisect_right(ends, s) // t.step_size)  # noqa: E731
    else:
        fn = lambda s: 1.0  # noqa: E731
    return torch.optim.lr_scheduler.LambdaLR(opt, fn)
