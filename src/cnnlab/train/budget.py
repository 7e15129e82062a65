"""Whether a training run can fit in this machine's memory, asked before anything is allocated.

The estimate is a lower bound, so it refuses only runs that cannot fit: the weights and their
gradients, plus what the conv and linear layers output for a batch (kept for the backward
pass), at 2 bytes a value where mixed precision may apply, else 4. Evaluation holds at least
its largest layer output for `eval_batch_size` images. The optimiser's state, the data and
everything else come on top, so a run that passes may still be tight, never the reverse.
"""

from __future__ import annotations

from typing import Any

import torch

from cnnlab.config import Recipe
from cnnlab.errors import CnnlabError
from cnnlab.machine import memory_bytes
from cnnlab.models.footprint import footprint

GB = 1e9


def _device_memory(device: str) -> tuple[int, str]:
    if device != "cpu" and torch.cuda.is_available():
        index = int(device.partition(":")[2] or 0) if device.startswith("cuda") else 0
        return torch.cuda.get_device_properties(index).total_memory, "this GPU has"
    return memory_bytes(), "this machine has"


def check_fits(
    recipe: Recipe, model_name: str, args: dict[str, Any], input_shape: tuple[int, int, int]
) -> None:
    """Refuse a run whose training step or evaluation batch cannot fit, naming the keys."""
    fp = footprint(model_name, args, input_shape)
    if fp is None:
        return
    t, f = recipe.train, recipe.finetune
    value_bytes = 4 if t.precision == "fp32" else 2
    weights = fp.params * 4
    have, where = _device_memory(t.device)
    size = f"data.image_size {input_shape[1]}x{input_shape[2]}"
    batches = [("train.batch_size", t.batch_size)]
    if f.epochs:
        batches.append(("finetune.batch_size", f.batch_size))
    for key, batch in batches:
        activations = fp.saved_per_image * batch * value_bytes
        need = 2 * weights + activations
        if need > have:
            raise CnnlabError(
                f"{key} {batch} at {size} needs at least {need / GB:.1f} GB for one training "
                f"step of {model_name} ({activations / GB:.1f} GB of layer outputs, "
                f"{2 * weights / GB:.1f} GB of weights and gradients); {where} "
                f"{have / GB:.1f} GB: lower {key} or data.image_size"
            )
    held = fp.largest_per_image * t.eval_batch_size * value_bytes + weights
    if held > have:
        raise CnnlabError(
            f"train.eval_batch_size {t.eval_batch_size} at {size} needs at least "
            f"{held / GB:.1f} GB to evaluate {model_name}; {where} {have / GB:.1f} GB: lower "
            "train.eval_batch_size or data.image_size"
        )
