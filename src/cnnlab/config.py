"""Typed recipes: dataclasses loaded from YAML, checked strictly, overridable from the CLI.

A recipe is data, never code: unknown keys and wrong types are refused at load time
with a message that names the key, so a typo cannot silently fall back to a default.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import yaml

from cnnlab.errors import CnnlabError
from cnnlab.fileio import read_capped
from cnnlab.strict import Refused, strict_yaml

RECIPE_MAX_BYTES = 1024 * 1024  # a recipe is a page of YAML
MAX_INPUT_PIXELS = 4096 * 4096  # a model input larger than this is a mistake, not a model
# counts that size an allocation or a list, or start threads: far past any real recipe, short
# of exhausting a machine (`threads: 100000` started threads until Python could start no more;
# `epochs` sizes per-epoch lists). What the machine can hold is checked again at run time
# (runtime.device.set_threads, train.budget).
MAX_THREADS = 1024
MAX_BATCH = 65_536
MAX_EPOCHS = 10_000
MAX_RANDOM_CROP = 1024  # pixels of padding on each side
MAX_CUTOUT = 4096  # the side of the blanked square
MAX_SEED = 2**32 - 1


@dataclass
class DataConfig:
    """Where the images come from and how they become tensors (this travels with the bundle)."""

    source: str = "mnist"  # a dataset name (mnist, fashion-mnist, cifar10) or a local path
    val_fraction: float = 0.1  # held out, stratified, when the source has no validation split
    split_seed: int = 0
    group_by: Literal["none", "patient"] = "none"  # keep one patient's images in one split
    image_size: list[int] | None = None  # [H, W]; None keeps the source size
    color_mode: Literal["auto", "grayscale", "rgb"] = "auto"
    resize: Literal["stretch", "letterbox", "center_crop"] = "stretch"
    normalize: Literal["dataset", "unit", "symmetric", "imagenet", "custom"] = "dataset"
    mean: list[float] | None = None  # only with normalize: custom (on the 0-1 scale)
    std: list[float] | None = None
    class_mode: Literal["categorical", "binary"] = "categorical"
    class_names: list[str] | None = None  # names for sources that carry only numbers (npz)
    cache: bool = True  # decoded image folders are cached on disk
    # a labelled folder from elsewhere (another site, a later acquisition): evaluated after
    # training and recorded in the bundle as external validation; never trained on
    external: str | None = None


@dataclass
class ModelConfig:
    name: str = "keras_mnist_cnn"
    args: dict[str, Any] = field(default_factory=dict)


@dataclass
class AugmentConfig:
    """Batched augmentation, with Keras ImageDataGenerator names; all off by default."""

    # true: mirror each image with probability 1/2; alternate: airbench's alternating flip (each
    # image mirrored in every other epoch, from a fixed random start: both views in any 2 epochs)
    horizontal_flip: bool | Literal["alternate"] = False
    vertical_flip: bool = False
    random_crop: int = 0  # pad by this many pixels (reflect), then crop back: a random translation
    rotation_range: float = 0.0  # degrees
    width_shift_range: float = 0.0  # fraction of width
    height_shift_range: float = 0.0  # fraction of height
    shear_range: float = 0.0  # degrees, as Keras
    zoom_range: float | list[float] = 0.0  # [1-z, 1+z] or an explicit [lo, hi]
    brightness_range: list[float] | None = None  # e.g. [0.8, 1.2]
    fill_mode: Literal["nearest", "reflect", "wrap", "constant"] = "nearest"
    cval: float = 0.0  # fill value for fill_mode: constant, on the 0-255 scale
    cutout: int = 0  # side of a random square set to the mean (0 = off)
    # acquisition differences (exposure, contrast, sharpness, noise), drawn per image:
    contrast_range: list[float] | None = None  # e.g. [0.7, 1.3]: scaled about the image mean
    gamma_range: list[float] | None = None  # e.g. [0.6, 1.6]: 255 * (x / 255) ** gamma
    blur: float = 0.0  # largest Gaussian blur sigma in pixels (drawn from [0, blur])
    noise: float = 0.0  # largest Gaussian noise std on the 0-255 scale (drawn from [0, noise])
    rescale: float | str | None = None  # Keras's rescale: only 1/255, read as data.normalize: unit


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 128
    eval_batch_size: int = 1024
    optimizer: Literal["sgd", "adam", "adamw", "muon"] = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    schedule: Literal["constant", "step", "cosine", "onecycle"] = "constant"
    step_size: int = 10  # epochs, for schedule: step
    gamma: float = 0.1
    warmup_fraction: float = 0.25  # for onecycle: share of steps spent rising to lr
    label_smoothing: float = 0.0
    class_weight: Literal["none", "auto"] = "none"
    early_stopping: int = 0  # patience in epochs; 0 = off
    # validate every N epochs (Keras's name) and after the last; 0 = not while training (the
    # bundle's validation metrics are computed after training either way)
    validation_freq: int = 1
    monitor: Literal["val_loss", "val_accuracy"] = "val_loss"
    seed: int = 0
    threads: int = 0  # 0 = all cores
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    channels_last: Literal["auto", "on", "off"] = "auto"
    device: str = "auto"  # auto, cpu, cuda, cuda:1, ...
    compile: bool = False  # torch.compile the model (worth it on a GPU)
    checkpoint: bool = True  # write checkpoint.pt after every epoch, for --resume
    # ... and within an epoch every this many minutes (0 = at epoch ends only), so a run killed
    # mid-epoch loses little; resuming from one continues bit for bit (single process)
    checkpoint_minutes: float = 5.0
    train_on_val: bool = False  # fold the validation split into training (final runs only)
    # share of the training set skipped in the middle epochs, drawn from the well-learned
    # images (InfoBatch; cnnlab.train.pruning); 0 = off, at most 0.5
    prune_easy: float = 0.0
    feature_cache: bool = True  # frozen backbone, no augmentation: the head trains on features
    # decay of an exponential moving average of the weights, updated every step; the bundle gets
    # the average (0 = off; 0.998 averages roughly the last 500 steps)
    ema: float = 0.0
    # airbench's lookahead: from 30% of the steps on, every 5 steps the weights are pulled back
    # towards a slow average of themselves, more strongly as training ends (callbacks.Lookahead)
    lookahead: bool = False
    # learning-rate factor for the norm layers' parameters (airbench raises its BatchNorm
    # biases' 64x): with norm scales frozen, their shifts are what must move quickly
    bias_lr_scale: float = 1.0
    # optimizer: muon (train.optim.Muon): conv filters step along their orthogonalised momentum
    # at this rate; every other parameter takes SGD at lr (both with momentum and nesterov)
    muon_lr: float = 0.24
    # FreezeOut (callbacks.LateFreeze): {layer: N} freezes that layer and every one before it
    # after N epochs, so the rest of the run's backward passes stop short of them (a run of N
    # epochs or fewer never freezes it, so a recipe shortened with --set still trains)
    freeze_after: dict[str, int] = field(default_factory=dict)


@dataclass
class FinetuneConfig:
    """An optional second phase for transfer models: unfreeze stages and train on, gently."""

    epochs: int = 0  # 0 = no fine-tuning phase
    unfreeze: str = "all"  # "all", or the first backbone stage to train (e.g. blocks.5)
    lr: float = 1e-4  # the head's; the backbone gets lr * model.args.backbone_lr_scale
    batch_size: int = 32
    optimizer: Literal["sgd", "adam", "adamw"] = "adamw"
    weight_decay: float = 0.01
    schedule: Literal["constant", "step", "cosine", "onecycle"] = "cosine"
    augment: bool = True  # the augment section is this phase's (phase 1 then runs without it)


@dataclass
class DecisionConfig:
    """How a binary model turns p(positive) into a label; fitted on the validation split."""

    policy: Literal["target_sensitivity", "youden", "fixed"] = "fixed"
    target_sensitivity: float = 0.95  # for policy target_sensitivity
    threshold: float = 0.5  # for policy fixed
    calibrate: bool = True  # fit temperature scaling on the validation split
    ood_check: bool = True  # fit an out-of-distribution check (cnnlab.train.ood) after training
    ood_percentile: float = 99.0  # its cut-off: this percentile of the validation distances


@dataclass
class Recipe:
    name: str = "recipe"
    description: str = ""
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    decision: DecisionConfig = field(default_factory=DecisionConfig)
    extra: dict[str, Any] = field(default_factory=dict)  # free-form settings read by later stages

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ----------------------------------------------------------------------------- checking


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        names = {bool: "true, false", type(None): "null"}
        parts = [names.get(a) or _type_name(a) for a in typing.get_args(tp)]
        return ", ".join(parts[:-1]) + " or " + parts[-1]
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check `value` against the annotation `tp`; ints are accepted where floats are expected."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        if isinstance(value, bool) and {"on", "off"} <= set(typing.get_args(tp)):
            value = "on" if value else "off"  # YAML 1.1 reads a bare on/off as a boolean
        if value not in typing.get_args(tp):
            raise CnnlabError(f"{where}: {value!r} is not one of {_type_name(tp)}")
        return value
    if origin in (typing.Union, types.UnionType):
        errors = []
        for arg in typing.get_args(tp):
            if arg is type(None):
                if value is None:
                    return None
                continue
            try:
                return _coerce(value, arg, where)
            except CnnlabError as e:
                errors.append(str(e))
        raise CnnlabError(f"{where}: {value!r} is not {_type_name(tp)}")
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, list | tuple):
            raise CnnlabError(f"{where}: expected a list, got {value!r}")
        return [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise CnnlabError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise CnnlabError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise CnnlabError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise CnnlabError(f"{where}: expected a number, got {value!r}")
        if not math.isfinite(value):  # NaN passes every `<=` check; infinity trains, then fails
            raise CnnlabError(f"{where}: expected a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise CnnlabError(f"{where}: expected a string, got {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, where)
    raise CnnlabError(f"{where}: unsupported type {tp}")  # pragma: no cover - programming error


def _build(cls: type, raw: Any, where: str) -> Any:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise CnnlabError(f"{where or 'recipe'}: expected a mapping of settings, got {raw!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        prefix = f"{where}." if where else ""
        raise CnnlabError(
            f"unknown recipe key {prefix}{unknown[0]}; valid keys here: {', '.join(sorted(known))}"
        )
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}" if where else k) for k, v in raw.items()}
    return cls(**kwargs)


def recipe_from_dict(raw: dict[str, Any]) -> Recipe:
    recipe = _build(Recipe, raw, "")
    validate(recipe)
    return recipe


def validate(recipe: Recipe) -> None:
    """Value checks that types alone cannot express."""
    d, t = recipe.data, recipe.train
    if not 0.0 <= d.val_fraction < 1.0:
        raise CnnlabError(f"data.val_fraction must be in [0, 1), got {d.val_fraction}")
    if d.image_size is not None and (len(d.image_size) != 2 or min(d.image_size) < 1):
        raise CnnlabError(f"data.image_size must be [height, width], got {d.image_size}")
    if d.image_size is not None and d.image_size[0] * d.image_size[1] > MAX_INPUT_PIXELS:
        raise CnnlabError(f"data.image_size {d.image_size[0]}x{d.image_size[1]} is over the "
                          f"{MAX_INPUT_PIXELS / 1e6:.1f} MP a model input may have")  # fmt: skip
    if d.normalize == "custom" and (d.mean is None or d.std is None):
        raise CnnlabError("data.normalize: custom needs data.mean and data.std")
    if d.std is not None and any(s <= 0 for s in d.std):
        raise CnnlabError(f"data.std must be positive, got {d.std}")
    for key in ("epochs", "batch_size", "eval_batch_size"):
        if getattr(t, key) < 1:
            raise CnnlabError(f"train.{key} must be at least 1, got {getattr(t, key)}")
    _check_bounds(recipe)
    if t.validation_freq < 0:
        raise CnnlabError(f"train.validation_freq must be 0 or more, got {t.validation_freq}")
    if t.lr <= 0:
        raise CnnlabError(f"train.lr must be positive, got {t.lr}")
    if not 0.0 <= t.momentum < 1.0:
        raise CnnlabError(f"train.momentum must be in [0, 1), got {t.momentum}")
    if t.weight_decay < 0:
        raise CnnlabError(f"train.weight_decay must be >= 0, got {t.weight_decay}")
    if t.step_size < 1 or t.gamma <= 0:
        raise CnnlabError(
            f"train.step_size must be at least 1 and train.gamma positive, got {t.step_size} "
            f"and {t.gamma}"
        )
    if not 0.0 < t.warmup_fraction < 1.0:
        raise CnnlabError(f"train.warmup_fraction must be in (0, 1), got {t.warmup_fraction}")
    if t.checkpoint_minutes < 0:
        raise CnnlabError(f"train.checkpoint_minutes must be >= 0, got {t.checkpoint_minutes}")
    if not 0.0 <= t.label_smoothing < 1.0:
        raise CnnlabError(f"train.label_smoothing must be in [0, 1), got {t.label_smoothing}")
    if t.early_stopping and t.validation_freq != 1:
        raise CnnlabError(
            "train.early_stopping needs validation every epoch (train.validation_freq: 1)"
        )
    if t.threads < 0:
        raise CnnlabError(f"train.threads must be >= 0, got {t.threads}")
    if not 0.0 <= t.prune_easy <= 0.5:
        raise CnnlabError(f"train.prune_easy must be in [0, 0.5], got {t.prune_easy}")
    if not 0 <= t.ema < 1:
        raise CnnlabError(f"train.ema must be in [0, 1) (a decay per step; 0 = off), got {t.ema}")
    if t.bias_lr_scale <= 0:
        raise CnnlabError(f"train.bias_lr_scale must be positive, got {t.bias_lr_scale}")
    if t.muon_lr <= 0:
        raise CnnlabError(f"train.muon_lr must be positive, got {t.muon_lr}")
    for layer, after in t.freeze_after.items():
        if not isinstance(layer, str) or isinstance(after, bool) or not isinstance(after, int):
            raise CnnlabError(
                f"train.freeze_after maps layer names to epochs, got {layer!r}: {after!r}"
            )
        if after < 1:  # at or past train.epochs it never applies: a shortened run is fine
            raise CnnlabError(f"train.freeze_after.{layer} must be at least 1 (the epochs it "
                              f"trains for), got {after}")  # fmt: skip
    if t.ema and t.early_stopping:
        raise CnnlabError("train.ema and train.early_stopping both choose the final weights; "
                          "use one of them")  # fmt: skip
    f, dc = recipe.finetune, recipe.decision
    if f.epochs < 0 or f.batch_size < 1 or f.lr <= 0 or f.weight_decay < 0:
        raise CnnlabError(
            "finetune: epochs must be >= 0, batch_size >= 1, lr positive and weight_decay >= 0"
        )
    if not 0.0 < dc.target_sensitivity <= 1.0:
        raise CnnlabError(
            f"decision.target_sensitivity must be in (0, 1], got {dc.target_sensitivity}"
        )
    if not 0.0 < dc.threshold < 1.0:  # 0 or 1 would give every image one label
        raise CnnlabError(f"decision.threshold must be in (0, 1), got {dc.threshold}")
    if not 50.0 <= dc.ood_percentile < 100.0:
        raise CnnlabError(f"decision.ood_percentile must be in [50, 100), got {dc.ood_percentile}")
    _check_augment(recipe)


def _at_most(key: str, value: int, top: int) -> None:
    if value > top:
        raise CnnlabError(f"{key} must be at most {top:,}, got {value}")


def _check_bounds(recipe: Recipe) -> None:
    """Upper bounds on what allocates, spawns or sizes a list, before anything does."""
    d, t, f, a = recipe.data, recipe.train, recipe.finetune, recipe.augment
    _at_most("train.threads", t.threads, MAX_THREADS)
    for key, value in (("train.batch_size", t.batch_size),
                       ("train.eval_batch_size", t.eval_batch_size),
                       ("finetune.batch_size", f.batch_size)):  # fmt: skip
        _at_most(key, value, MAX_BATCH)
    for key, value in (("train.epochs", t.epochs), ("finetune.epochs", f.epochs),
                       ("train.step_size", t.step_size), ("train.early_stopping", t.early_stopping),
                       ("train.validation_freq", t.validation_freq),
                       *((f"train.freeze_after.{k}", v) for k, v in t.freeze_after.items()
                         if isinstance(v, int))):  # fmt: skip
        _at_most(key, value, MAX_EPOCHS)
    _at_most("augment.random_crop", a.random_crop, MAX_RANDOM_CROP)
    _at_most("augment.cutout", a.cutout, MAX_CUTOUT)
    for key, seed in (("train.seed", t.seed), ("data.split_seed", d.split_seed)):
        if not 0 <= seed <= MAX_SEED:
            raise CnnlabError(f"{key} must be from 0 to {MAX_SEED:,}, got {seed}")


def _check_augment(recipe: Recipe) -> None:
    """Augment values; Keras's `rescale: 1/255` becomes data.normalize: unit (it is
    preprocessing, so it must travel in the bundle, not live in the augmentation)."""
    check_augment(recipe.augment)
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


def check_augment(cfg: AugmentConfig) -> None:
    """Value checks for the augment section, so a bad recipe fails before training starts."""
    ranges = {
        "rotation_range": cfg.rotation_range,
        "width_shift_range": cfg.width_shift_range,
        "height_shift_range": cfg.height_shift_range,
        "shear_range": cfg.shear_range,
        "random_crop": cfg.random_crop,
        "cutout": cfg.cutout,
    }
    for key, value in ranges.items():
        if value < 0:
            raise CnnlabError(f"augment.{key} must be >= 0, got {value}")
    if isinstance(cfg.zoom_range, list) and len(cfg.zoom_range) != 2:
        raise CnnlabError(f"augment.zoom_range must be a number or [lo, hi], got {cfg.zoom_range}")
    lo, hi = zoom_bounds(cfg.zoom_range)
    if not 0 < lo <= hi:
        raise CnnlabError(
            f"augment.zoom_range must give 0 < lo <= hi, got [{lo}, {hi}] (a number z means [1-z, 1+z])"
        )
    for key in ("contrast_range", "gamma_range"):
        r = getattr(cfg, key)
        if r is not None and (len(r) != 2 or not 0 < r[0] <= r[1]):
            raise CnnlabError(f"augment.{key} must be [lo, hi] with 0 < lo <= hi, got {r}")
    for key, top in (("blur", 10), ("noise", 128)):
        if not 0 <= getattr(cfg, key) <= top:
            raise CnnlabError(f"augment.{key} must be between 0 and {top}, got {getattr(cfg, key)}")
    b = cfg.brightness_range
    if b is not None and (len(b) != 2 or not 0 <= b[0] <= b[1]):
        raise CnnlabError(f"augment.brightness_range must be [lo, hi] with 0 <= lo <= hi, got {b}")
    if not 0 <= cfg.cval <= 255:
        raise CnnlabError(f"augment.cval is on the 0-255 pixel scale, got {cfg.cval}")


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Read a YAML recipe, apply `key=value` overrides (values parsed as YAML), check it."""
    path = Path(path)
    if not path.is_file():
        raise CnnlabError(f"recipe not found: {path}")
    try:
        text = read_capped(path, RECIPE_MAX_BYTES).decode()
    except OSError as e:
        raise CnnlabError(f"recipe {path} cannot be read: {e}") from None
    except UnicodeDecodeError:
        raise CnnlabError(f"recipe {path} is not a text file") from None
    raw = strict_yaml(text, f"recipe {path}")
    if raw is None:  # an empty file must not silently train the defaults
        raise CnnlabError(
            f"recipe {path} is empty: write its sections (data, model, train, ...); see recipes/"
        )
    if not isinstance(raw, dict):
        raise CnnlabError(f"recipe {path} must be a mapping of sections (data, model, train, ...)")
    raw.setdefault("name", path.stem)
    for item in overrides or []:
        apply_override(raw, item)
    return recipe_from_dict(raw)


def apply_override(raw: dict[str, Any], item: str) -> None:
    """`train.lr=0.01` or `model.args.width=64`: a dotted key and a YAML value."""
    if "=" not in item:
        raise CnnlabError(f"--set expects key=value, got {item!r}")
    key, _, text = item.partition("=")
    try:
        value = strict_yaml(text, f"--set {key.strip()}") if text.strip() else None
    except Refused:  # a bomb or a duplicate key, not merely text that is not YAML
        raise
    except CnnlabError:
        value = text
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise CnnlabError(f"--set expects key=value, got {item!r}")
    node = raw
    for p in parts[:-1]:
        nxt = node.setdefault(p, {})
        if not isinstance(nxt, dict):
            raise CnnlabError(f"--set {key}: {p} is not a section")
        node = nxt
    node[parts[-1]] = value


def save_recipe(recipe: Recipe, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(recipe.to_dict(), sort_keys=False))
