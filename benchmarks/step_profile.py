"""Where a training step's time goes, and how near the CPU's ceiling it runs.

For a recipe: its model, batch size, precision and memory format, a random batch of the
model's input shape; times bare training steps (forward, loss, backward, a step of the
recipe's optimiser: no data loading, augmentation or callbacks, so the figure is the model's
own cost), prints the operators that take the time (torch.profiler), and sets the step's
arithmetic (3x the forward multiply-adds of one view, from `cnnlab summary`) against the rate
of a large matrix multiply measured in the same run: the ceiling a convolution net approaches
on this CPU. A step far below it is bound by memory traffic and small kernels rather than
arithmetic.

    flock /tmp/cnnlab-cpu.lock python benchmarks/step_profile.py recipes/fashion_mnist_fast.yaml
        [--steps 20] [--set train.precision=fp32 ...] [--input C,H,W]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn as nn


def matmul_rate(dtype: torch.dtype, n: int = 2048, repeat: int = 8) -> float:
    """GFLOP/s of an n x n matrix multiply in `dtype` (the CPU's practical peak)."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    a @ b
    start = time.perf_counter()
    for _ in range(repeat):
        a @ b
    return 2 * n**3 * repeat / (time.perf_counter() - start) / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("recipe")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--input", help="C,H,W (default: the model's native input)")
    args = ap.parse_args()
    from torch.profiler import ProfilerActivity, profile

    from cnnlab.anatomy.summary import summarize
    from cnnlab.config import load_recipe
    from cnnlab.models import create_model, get_entry
    from cnnlab.runtime.device import (
        choose_runtime,
        keep_allocations_on_heap,
        machine_line,
        set_threads,
    )
    from cnnlab.train.optim import make_optimizer

    recipe = load_recipe(args.recipe, args.set)
    t = recipe.train
    print(machine_line(t.precision), flush=True)
    set_threads(t.threads)
    rt = choose_runtime("cpu", t.precision, t.channels_last)
    keep_allocations_on_heap()
    entry = get_entry(recipe.model.name)
    input_shape = tuple(int(v) for v in args.input.split(",")) if args.input else entry.input_size
    model_args = {"in_channels": input_shape[0], "input_size": list(input_shape[1:]),
                  **recipe.model.args}  # fmt: skip
    model = create_model(recipe.model.name, **model_args)
    # one view: summarize runs eval mode, where a model with test-time augmentation runs several
    plain = {**model_args, "tta": False} if "tta" in entry.arguments() else model_args
    macs = summarize(create_model(recipe.model.name, **plain), input_shape).mult_adds
    classes = entry.num_classes
    batch = t.batch_size
    x = torch.rand(batch, *input_shape)
    y = torch.randint(0, max(2, classes), (batch,))
    model.train()
    if rt.channels_last:
        model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = make_optimizer(model, t)  # the recipe's: Muon's orthogonalising is part of a step
    loss_fn = nn.CrossEntropyLoss()

    def step() -> None:
        with rt.autocast():
            out = model(x)
        loss = loss_fn(out.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(5):
        step()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    per_step = (time.perf_counter() - start) / args.steps
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(5):
            step()
    dtype = rt.amp_dtype or torch.float32
    peak = matmul_rate(dtype)
    achieved = 3 * 2 * macs * batch / per_step / 1e9
    print(f"{recipe.model.name} {model_args}, batch {batch}, input {input_shape}, "
          f"{rt.describe()}")  # fmt: skip
    print(f"step {per_step * 1000:.1f} ms = {batch / per_step:,.0f} images/s; "
          f"{3 * 2 * macs / 1e6:.1f} MFLOP per image (3x forward) -> {achieved:.0f} GFLOP/s; "
          f"a {dtype} 2048x2048 matmul here: {peak:.0f} GFLOP/s ({achieved / peak:.0%} of it)")  # fmt: skip
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15)
    print("\n".join(line[:120] for line in table.splitlines()))
    print(f"(recipe {Path(args.recipe).name})")


if __name__ == "__main__":
    main()
