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
    if t.optimizer == "sgd":
        kw |= {"momentum": t.momentum, "nesterov": t.nesterov}
    try:
        return kind(groups, fused=fused or None, **kw)
    except RuntimeError:  # a PyTorch (torch>=2.4 is allowed) without this device's fused kernel
        return kind(groups, **kw)


_OPTIMIZERS = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
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
