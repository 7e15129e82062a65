"""The recipe's keys: each one's type, default, bounds and meaning, in one place.

The README's recipe reference is rendered from these models (cnnlab.config.reference) and
tests/test_readme.py checks that it matches. Types are strict: a recipe is data someone typed,
so "3" is not an integer, 1.5 is not an integer and `true` is not a number (an integer is a
number). Bounds written as `Field(ge=..., le=...)` become the error message and the reference.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    model_validator,
)
from pydantic_core import PydanticCustomError

from cnnlab.config.bounds import (
    MAX_BATCH,
    MAX_CUTOUT,
    MAX_EPOCHS,
    MAX_INPUT_PIXELS,
    MAX_RANDOM_CROP,
    MAX_SEED,
    MAX_THREADS,
)
from cnnlab.config.checks import check_recipe


def rule(holds, phrase: str, before: bool = False) -> AfterValidator | BeforeValidator:
    """A check types and bounds cannot express; a failure reads `<key> <phrase>, got <value>`.
    `before`: on the value as written, ahead of the type's own checks of its items."""

    def check(value):
        if not holds(value):
            raise PydanticCustomError("recipe_rule", phrase)
        return value

    check.phrase = phrase  # the reference shows it (cnnlab.config.reference)
    return BeforeValidator(check) if before else AfterValidator(check)


def _yaml_on_off(value: Any) -> Any:
    """YAML 1.1 reads a bare on/off as a boolean; where the setting is 'on' | 'off' it is the word."""
    return ("on" if value else "off") if isinstance(value, bool) else value


Seed = Annotated[int, rule(lambda v: 0 <= v <= MAX_SEED, f"must be from 0 to {MAX_SEED:,}")]
Epochs = Annotated[int, Field(ge=1, le=MAX_EPOCHS)]
Size = Annotated[list[int], rule(lambda s: len(s) == 2 and min(s) >= 1, "must be [height, width]")]
Range = Annotated[
    list[float],
    rule(lambda r: len(r) == 2 and 0 < r[0] <= r[1], "must be [lo, hi] with 0 < lo <= hi"),
]
Brightness = Annotated[
    list[float],
    rule(lambda r: len(r) == 2 and 0 <= r[0] <= r[1], "must be [lo, hi] with 0 <= lo <= hi"),
]
LayerEpochs = Annotated[
    dict[str, Epochs],
    rule(lambda m: not isinstance(m, dict) or all(isinstance(k, str) and type(v) is int
                                                  for k, v in m.items()),
         "maps layer names to epochs", before=True),
]  # fmt: skip
OnOff = Annotated[Literal["auto", "on", "off"], BeforeValidator(_yaml_on_off)]
Schedule = Literal["constant", "step", "cosine", "onecycle"]
CALLBACKS = ("early_stopping", "lookahead", "ema", "freeze_after", "checkpoint", "tensorboard")


class Section(BaseModel):
    """One recipe section: unknown keys and wrong types refused (recipe_from_dict words
    pydantic's ValidationError as a CnnlabError naming the key: cnnlab.config.messages)."""

    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)


class DataConfig(Section):
    """Where the images come from and how they become tensors (this travels with the bundle)."""

    source: str = Field(
        "mnist",
        description="a dataset name (mnist, fashion-mnist, cifar10) or a local path (image "
        "folder, .npz)",
    )
    val_fraction: float = Field(
        0.1, ge=0, lt=1, description="held out, stratified, when the source has no validation split"
    )
    split_seed: Seed = Field(0, description="draws that split")
    group_by: Literal["none", "patient"] = Field(
        "none", description="patient: each patient's images on one side of the split"
    )
    image_size: Size | None = Field(
        None,
        description=f"[H, W] the images are resized to (at most {MAX_INPUT_PIXELS:,} pixels); "
        "null keeps the source's",
    )
    color_mode: Literal["auto", "grayscale", "rgb"] = Field(
        "auto", description="auto keeps the source's channels"
    )
    resize: Literal["stretch", "letterbox", "center_crop"] = Field(
        "stretch", description="how an image of another shape reaches image_size"
    )
    normalize: Literal["dataset", "unit", "symmetric", "imagenet", "custom"] = Field(
        "dataset",
        description="dataset: its own mean and std; unit: 0-1; symmetric: -1 to 1; custom: "
        "mean and std below",
    )
    mean: list[float] | None = Field(None, description="per channel, on the 0-1 scale (custom)")
    std: list[Annotated[float, Field(gt=0)]] | None = Field(
        None, description="per channel, on the 0-1 scale (custom)"
    )
    class_mode: Literal["categorical", "binary"] = Field(
        "categorical", description="binary: one output, p(positive), and a fitted threshold"
    )
    class_names: list[str] | None = Field(
        None, description="names for sources that carry only numbers (npz)"
    )
    cache: bool = Field(True, description="decoded image folders are cached on disk")
    external: str | None = Field(
        None,
        description="a labelled folder from elsewhere (another site, a later acquisition), "
        "evaluated after training and recorded in the bundle; never trained on",
    )


class ModelConfig(Section):
    """Which registered model, with what arguments."""

    name: str = Field("keras_mnist_cnn", description="a registered model (`cnnlab models`)")
    args: dict[str, Any] = Field(
        default_factory=dict, description="its arguments, checked against the model's signature"
    )


class AugmentConfig(Section):
    """Batched augmentation, with Keras ImageDataGenerator names; all off by default."""

    horizontal_flip: bool | Literal["alternate"] = Field(
        False,
        description="true: mirror each image with probability 1/2; alternate: airbench's "
        "alternating flip (each image mirrored every other epoch, from a random start)",
    )
    vertical_flip: bool = Field(False, description="mirror top to bottom with probability 1/2")
    random_crop: int = Field(
        0,
        ge=0,
        le=MAX_RANDOM_CROP,
        description="pad by this many pixels (reflect), then crop back: a random translation",
    )
    rotation_range: float = Field(0.0, ge=0, description="degrees")
    width_shift_range: float = Field(0.0, ge=0, description="fraction of the width")
    height_shift_range: float = Field(0.0, ge=0, description="fraction of the height")
    shear_range: float = Field(0.0, ge=0, description="degrees, as Keras")
    zoom_range: float | list[float] = Field(
        0.0, description="z zooms by [1-z, 1+z]; or an explicit [lo, hi], 0 < lo <= hi"
    )
    brightness_range: Brightness | None = Field(None, description="e.g. [0.8, 1.2]")
    fill_mode: Literal["nearest", "reflect", "wrap", "constant"] = Field(
        "nearest", description="what fills the pixels a transform uncovers"
    )
    cval: float = Field(0.0, ge=0, le=255, description="the fill for constant, on the 0-255 scale")
    cutout: int = Field(
        0, ge=0, le=MAX_CUTOUT, description="side of a random square set to the mean (0 = off)"
    )
    contrast_range: Range | None = Field(
        None, description="e.g. [0.7, 1.3]: scaled about the image mean (acquisition differences)"
    )
    gamma_range: Range | None = Field(None, description="e.g. [0.6, 1.6]: 255 * (x / 255) ** gamma")
    blur: float = Field(
        0.0, ge=0, le=10, description="largest Gaussian blur sigma in pixels, drawn from [0, blur]"
    )
    noise: float = Field(
        0.0,
        ge=0,
        le=128,
        description="largest Gaussian noise std on the 0-255 scale, drawn per image",
    )
    rescale: float | str | None = Field(
        None, description="Keras's rescale: only 1/255, read as data.normalize: unit"
    )


class TrainConfig(Section):
    """How the weights are fitted."""

    epochs: Epochs = Field(10, description="passes over the training set")
    batch_size: int = Field(
        128, ge=1, le=MAX_BATCH, description="images per step (over all processes)"
    )
    eval_batch_size: int = Field(
        1024, ge=1, le=MAX_BATCH, description="images per step when validating"
    )
    optimizer: Literal["sgd", "adam", "adamw", "muon"] = Field(
        "adam", description="muon: conv filters by Muon at muon_lr, the rest by SGD at lr"
    )
    lr: float = Field(1e-3, gt=0, description="the learning rate (the peak, for onecycle)")
    momentum: float = Field(0.9, ge=0, lt=1, description="for sgd and muon")
    nesterov: bool = Field(False, description="Nesterov momentum, for sgd and muon")
    weight_decay: float = Field(0.0, ge=0, description="L2 penalty (decoupled, for adamw)")
    schedule: Schedule = Field("constant", description="how lr changes over the run")
    step_size: Epochs = Field(10, description="epochs between decays, for schedule: step")
    gamma: float = Field(0.1, gt=0, description="the decay factor, for schedule: step")
    warmup_fraction: float = Field(
        0.25, gt=0, lt=1, description="for onecycle: share of steps spent rising to lr"
    )
    label_smoothing: float = Field(
        0.0, ge=0, lt=1, description="share of each target spread over the other classes"
    )
    class_weight: Literal["none", "auto"] = Field(
        "none", description="auto weights the loss by inverse class frequency"
    )
    early_stopping: int = Field(0, ge=0, le=MAX_EPOCHS, description="patience in epochs; 0 = off")
    validation_freq: int = Field(
        1,
        ge=0,
        le=MAX_EPOCHS,
        description="validate every N epochs (Keras's name) and after the last; 0 = not while "
        "training (the bundle's validation metrics are computed after training either way)",
    )
    monitor: Literal["val_loss", "val_accuracy"] = Field(
        "val_loss", description="what early_stopping watches"
    )
    seed: Seed = Field(0, description="weights, batch order and augmentation draws")
    threads: int = Field(0, ge=0, le=MAX_THREADS, description="0 = all cores")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="auto: bf16 autocast where the CPU or GPU has native bf16, else fp32"
    )
    channels_last: OnOff = Field(
        "auto",
        description="NHWC memory; auto: where oneDNN or cuDNN run convolutions in it natively",
    )
    device: str = Field("auto", description="auto, cpu, cuda, cuda:1, ...")
    compile: bool = Field(False, description="torch.compile the model (worth it on a GPU)")
    checkpoint: bool = Field(
        True, description="write checkpoint.pt after every epoch, for --resume"
    )
    checkpoint_minutes: float = Field(
        5.0,
        ge=0,
        description="... and within an epoch every this many minutes (0 = at epoch ends only); "
        "resuming from one continues bit for bit (single process)",
    )
    train_on_val: bool = Field(
        False, description="fold the validation split into training (final runs only)"
    )
    prune_easy: float = Field(
        0.0,
        ge=0,
        le=0.5,
        description="share of the training set skipped in the middle epochs, drawn from the "
        "well-learned images (InfoBatch); 0 = off",
    )
    feature_cache: bool = Field(
        True, description="frozen backbone, no augmentation: the head trains on cached features"
    )
    ema: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="decay per step of a moving average of the weights, which the bundle gets "
        "(0 = off; 0.998 averages about the last 500 steps)",
    )
    lookahead: bool = Field(
        False,
        description="airbench's lookahead: from 30% of the steps on, every 5 steps the weights "
        "are pulled towards a slow average of themselves",
    )
    bias_lr_scale: float = Field(
        1.0,
        gt=0,
        description="learning-rate factor for the norm layers' parameters (airbench raises "
        "its BatchNorm biases' 64x)",
    )
    muon_lr: float = Field(
        0.24,
        gt=0,
        description="for optimizer: muon, the conv filters' rate along their orthogonalised "
        "momentum (every other parameter takes SGD at lr)",
    )
    freeze_after: LayerEpochs = Field(
        default_factory=dict,
        description="{layer: N} freezes that layer and every one before it after N epochs "
        "(FreezeOut; a run of N epochs or fewer never freezes it)",
    )
    callbacks: list[Literal[CALLBACKS]] = Field(
        default_factory=lambda: list(CALLBACKS),
        description="those that may run (cnnlab.train.listed), each as its own setting above "
        "says; one left out is off",
    )


class FinetuneConfig(Section):
    """An optional second phase for transfer models: unfreeze stages and train on, gently."""

    epochs: int = Field(0, ge=0, le=MAX_EPOCHS, description="0 = no fine-tuning phase")
    unfreeze: str = Field(
        "all", description="all, or the first backbone stage to train (e.g. blocks.5)"
    )
    lr: float = Field(
        1e-4, gt=0, description="the head's; the backbone's is lr * model.args.backbone_lr_scale"
    )
    batch_size: int = Field(32, ge=1, le=MAX_BATCH, description="images per step")
    optimizer: Literal["sgd", "adam", "adamw"] = Field("adamw", description="this phase's")
    weight_decay: float = Field(0.01, ge=0, description="this phase's")
    schedule: Schedule = Field("cosine", description="this phase's")
    augment: bool = Field(
        True, description="the augment section is this phase's (phase 1 then runs without it)"
    )


class DecisionConfig(Section):
    """How a binary model turns p(positive) into a label; fitted on the validation split."""

    policy: Literal["target_sensitivity", "target_ppv", "youden", "fixed"] = Field(
        "fixed",
        description="target_sensitivity: the highest threshold that reaches it; target_ppv: "
        "the lowest threshold whose PPV at `prevalence` reaches it; youden: the best "
        "sensitivity + specificity; fixed: threshold below",
    )
    target_sensitivity: float = Field(
        0.95, gt=0, le=1, description="for policy: target_sensitivity"
    )
    target_ppv: float = Field(0.5, gt=0, lt=1, description="for policy: target_ppv")
    prevalence: float | None = Field(
        None, gt=0, lt=1,
        description="for policy: target_ppv, the share of positives where the model is used",
    )  # fmt: skip
    threshold: float = Field(
        0.5, gt=0, lt=1, description="for policy: fixed (0 or 1 would give every image one label)"
    )
    calibrate: bool = Field(True, description="fit temperature scaling on the validation split")
    ood_check: bool = Field(
        True,
        description="fit an out-of-distribution check after training (cnnlab.evaluate.ood_fit)",
    )
    ood_percentile: float = Field(
        99.0, ge=50, lt=100, description="its cut-off: this percentile of the validation distances"
    )


def _section_or_defaults(value: Any) -> Any:
    return {} if value is None else value  # `augment:` with nothing under it: the defaults


Part = BeforeValidator(_section_or_defaults)


class Recipe(Section):
    """A training run as data: never code (a recipe is not executed)."""

    name: str = Field("recipe", description="the run's name (a file's recipe: its file name)")
    description: str = Field("", description="one line on what the run is for")
    data: Annotated[DataConfig, Part] = Field(default_factory=DataConfig)
    model: Annotated[ModelConfig, Part] = Field(default_factory=ModelConfig)
    augment: Annotated[AugmentConfig, Part] = Field(default_factory=AugmentConfig)
    train: Annotated[TrainConfig, Part] = Field(default_factory=TrainConfig)
    finetune: Annotated[FinetuneConfig, Part] = Field(default_factory=FinetuneConfig)
    decision: Annotated[DecisionConfig, Part] = Field(default_factory=DecisionConfig)
    extra: dict[str, Any] = Field(
        default_factory=dict, description="free-form settings read by later stages"
    )

    @model_validator(mode="after")
    def _values_agree(self) -> Recipe:
        check_recipe(self)  # once every key has its type: checks that span keys
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain data, in the keys' order: what recipe.yaml and bundle.json hold."""
        return self.model_dump()
