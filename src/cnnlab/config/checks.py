"""Checks that span keys, run once every key has its type and bounds (cnnlab.config.sections
calls them, so they take its objects untyped here: no import circle); each failure is a
CnnlabError that names the keys."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from cnnlab.config.bounds import MAX_INPUT_PIXELS
from cnnlab.errors import CnnlabError


def check_recipe(recipe: Any) -> None:
    d, t = recipe.data, recipe.train
    if d.image_size is not None and d.image_size[0] * d.image_size[1] > MAX_INPUT_PIXELS:
        raise CnnlabError(f"data.image_size {d.image_size[0]}x{d.image_size[1]} is over the "
                          f"{MAX_INPUT_PIXELS / 1e6:.1f} MP a model input may have")  # fmt: skip
    if d.normalize == "custom" and (d.mean is None or d.std is None):
        raise CnnlabError("data.normalize: custom needs data.mean and data.std")
    if t.early_stopping and t.validation_freq != 1:
        raise CnnlabError(
            "train.early_stopping needs validation every epoch (train.validation_freq: 1)"
        )
    if t.ema and t.early_stopping:
        raise CnnlabError("train.ema and train.early_stopping both choose the final weights; "
                          "use one of them")  # fmt: skip
    if recipe.decision.policy == "target_ppv" and recipe.decision.prevalence is None:
        raise CnnlabError("decision.policy: target_ppv needs decision.prevalence (the share of "
                          "positives where the model is used: PPV depends on it)")  # fmt: skip
    check_augment(recipe.augment)
    _rescale_is_normalize(recipe)


def _rescale_is_normalize(recipe: Any) -> None:
    """Keras's `rescale: 1/255` becomes data.normalize: unit (it is preprocessing, so it must
    travel in the bundle, not live in the augmentation)."""
    scale = parse_rescale(recipe.augment.rescale)
    if scale is None:
        return
    if abs(scale * 255 - 1) > 1e-6:
        raise CnnlabError(
            f"augment.rescale: only 1/255 is supported (got {scale:g}); for other scales use "
            "data.normalize: custom with data.mean and data.std"
        )
    if recipe.data.normalize not in ("dataset", "unit"):
        raise CnnlabError(
            f"augment.rescale: 1/255 and data.normalize: {recipe.data.normalize} disagree; keep one"
        )
    recipe.data.normalize = "unit"


def check_augment(cfg: Any) -> None:
    """The augment values their bounds cannot check (each key's own bounds are in its Field)."""
    if isinstance(cfg.zoom_range, list) and len(cfg.zoom_range) != 2:
        raise CnnlabError(f"augment.zoom_range must be a number or [lo, hi], got {cfg.zoom_range}")
    lo, hi = zoom_bounds(cfg.zoom_range)
    if not 0 < lo <= hi:
        raise CnnlabError(
            f"augment.zoom_range must give 0 < lo <= hi, got [{lo}, {hi}] (a number z means [1-z, 1+z])"
        )


def zoom_bounds(zoom_range: float | list[float]) -> tuple[float, float]:
    """Zoom factors (lo, hi): a number z means [1 - z, 1 + z], as in Keras; a pair is kept."""
    if isinstance(zoom_range, list | tuple):
        return float(zoom_range[0]), float(zoom_range[1])
    return 1.0 - float(zoom_range), 1.0 + float(zoom_range)


def parse_rescale(value: float | str | None) -> float | None:
    """Keras's `rescale` as a number: 0.00392..., "1/255" or "1./255"."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            num, _, den = value.replace(" ", "").partition("/")
            scale = float(Fraction(num.rstrip(".") or "1")) / float(den.rstrip(".") or 1)
        except (ValueError, ZeroDivisionError):
            raise CnnlabError(f"augment.rescale: cannot read {value!r} (write 1/255)") from None
        return scale
    return float(value)
