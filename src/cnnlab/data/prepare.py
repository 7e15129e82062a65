"""From a recipe's data section to train / val (/ test) splits and the preprocessing spec."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from cnnlab.config import DataConfig
from cnnlab.data.dataset import ImageData, concat
from cnnlab.data.preprocess import Preprocess, normalization
from cnnlab.data.sources import load_source
from cnnlab.data.splits import patient_id, stratified_split
from cnnlab.errors import CnnlabError

log = logging.getLogger("cnnlab")

MIN_GIVEN_VAL = (
    50  # a smaller given validation split (Kaggle chest X-ray: 16) is merged and re-split
)


@dataclass
class PreparedData:
    train: ImageData
    val: ImageData | None
    preprocess: Preprocess
    format: str
    source: str
    val_origin: str  # "given" (the source had one), "held-out" (split here), or "none"
    skipped: list[tuple[str, str]] = field(default_factory=list)
    test: ImageData | None = None

    @property
    def classes(self) -> list[str]:
        return self.train.classes


def split_off_val(train: ImageData, cfg: DataConfig) -> tuple[ImageData, ImageData]:
    groups = None
    if cfg.group_by == "patient":
        if train.paths is None:
            raise CnnlabError(
                "data.group_by: patient needs an image folder (file names carry the patient)"
            )
        groups = [patient_id(p) for p in train.paths]
    tr, va = stratified_split(train.labels, cfg.val_fraction, cfg.split_seed, groups)
    return train.subset(tr), train.subset(va)


def prepare_data(
    cfg: DataConfig, source: str | None = None, with_test: bool = False
) -> PreparedData:
    """Load the source, hold out a validation split if it has none, and fix the preprocessing."""
    loaded = load_source(
        source or cfg.source, None, cfg.image_size, cfg.color_mode, cfg.resize, cfg.cache
    )
    if "train" not in loaded.splits:
        raise CnnlabError(
            f"{loaded.source} has no training split (found: {', '.join(loaded.splits)})"
        )
    train = loaded.splits["train"]
    if cfg.class_names is not None:
        if len(cfg.class_names) != len(train.classes):
            raise CnnlabError(
                f"data.class_names has {len(cfg.class_names)} names for {len(train.classes)} classes"
            )
        for name, d in loaded.splits.items():
            loaded.splits[name] = ImageData(d.images, d.labels, list(cfg.class_names), d.paths)
        train = loaded.splits["train"]
    if cfg.class_mode == "binary" and len(train.classes) != 2:
        raise CnnlabError(
            f"class_mode: binary needs exactly 2 classes, found {len(train.classes)}: {train.classes}"
        )
    val = loaded.splits.get("val")
    origin = "given"
    if val is not None and len(val) < MIN_GIVEN_VAL and cfg.val_fraction > 0:
        log.warning(
            "the given validation split has only %d images, too few to judge a model; "
            "merging it into train and holding out %.0f%% instead",
            len(val),
            cfg.val_fraction * 100,
        )
        train, val = concat([train, val]), None
    if val is None:
        if cfg.val_fraction > 0:
            train, val = split_off_val(train, cfg)
            origin = "held-out"
        else:
            val, origin = None, "none"
    mean, std = normalization(cfg.normalize, train.channels, train.images, cfg.mean, cfg.std)
    pre = Preprocess(
        channels=train.channels, size=list(train.size), mean=mean, std=std, resize=cfg.resize
    )
    return PreparedData(
        train=train,
        val=val,
        preprocess=pre,
        format=loaded.format,
        source=loaded.source,
        val_origin=origin,
        skipped=loaded.skipped,
        test=loaded.splits.get("test") if with_test else None,
    )


def check_trainable(data: PreparedData) -> None:
    """Refuse data that cannot train a classifier, before any step: one class (a one-output
    model would report 100%), or a class without a single training image (the model would
    never see it); warn about classes the validation split does not hold."""
    counts = data.train.class_counts()
    if len(counts) < 2:
        raise CnnlabError(
            f"{data.source} has {len(counts)} class{'' if len(counts) == 1 else 'es'} "
            f"({', '.join(counts) or 'none'}); a classifier needs at least 2 "
            "(one folder of images per class)"
        )
    missing = [c for c, n in counts.items() if n == 0]
    if missing:
        held = " after the validation split was held out" if data.val_origin == "held-out" else ""
        raise CnnlabError(
            f"no training images for class{'es' if len(missing) > 1 else ''} "
            f"{', '.join(missing)}{held}; add images (or remove the class folder)"
            + (", or lower data.val_fraction" if held else "")
        )
    if data.val is not None:
        unseen = [c for c, n in data.val.class_counts().items() if n == 0]
        if unseen:
            log.warning("the validation split has no images of %s: its figures leave %s out",
                        ", ".join(unseen), "them" if len(unseen) > 1 else "it")  # fmt: skip
