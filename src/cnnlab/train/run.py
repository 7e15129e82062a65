"""`cnnlab train`: recipe -> data -> model -> fit -> validation report -> bundle.

Everything that can be wrong with the input (data, model name, arguments, the checkpoint a
`--resume` continues) is checked before the run folder is created or changed, so a bad input
leaves nothing behind; a run that fails later removes what it wrote (`run_folder`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import shlex
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from cnnlab.bundle.save import save_bundle
from cnnlab.config import Recipe, save_recipe
from cnnlab.data.prepare import PreparedData, check_trainable, prepare_data
from cnnlab.errors import CnnlabError
from cnnlab.evaluate.scores import full_report, save_confusion_matrix, save_mistakes
from cnnlab.fileio import clean_stale_temps
from cnnlab.models import create_model, get_entry
from cnnlab.models.pretrained import check_weights_available
from cnnlab.runtime.decision import probabilities
from cnnlab.runtime.device import choose_runtime
from cnnlab.runtime.inference import predict_logits
from cnnlab.runtime.ood import save_ood
from cnnlab.train import distributed
from cnnlab.train.budget import check_fits
from cnnlab.train.callbacks import write_history
from cnnlab.train.checkpoint import CHECKPOINT
from cnnlab.train.fit import FitResult
from cnnlab.train.listed import run_callbacks
from cnnlab.train.losses import describe_losses
from cnnlab.train.phases import check_resume, fit_model

log = logging.getLogger("cnnlab")


@dataclass
class TrainOutcome:
    out_dir: Path
    result: FitResult
    metrics: dict[str, Any]
    data: PreparedData


def model_arguments(recipe: Recipe, data: PreparedData) -> dict[str, Any]:
    """The recipe's model arguments, with input channels/size and outputs filled in from the data."""
    args = dict(recipe.model.args)
    valid = get_entry(recipe.model.name).arguments()
    outputs = 1 if recipe.data.class_mode == "binary" else len(data.classes)
    filled = {
        "in_channels": data.train.channels,
        "num_classes": outputs,
        "input_size": list(data.train.size),
    }
    for key, value in filled.items():
        if key in valid and key not in args:
            args[key] = value
    if "num_classes" in args and args["num_classes"] != outputs:
        raise CnnlabError(
            f"model.args.num_classes is {args['num_classes']} but the data has {len(data.classes)} classes "
            f"({recipe.data.class_mode}: {outputs} output{'s' if outputs > 1 else ''})"
        )
    return args


def build_model(recipe: Recipe, data: PreparedData) -> tuple[nn.Module, dict[str, Any]]:
    """The recipe's model, once its size and a training step are known to fit (train.budget)."""
    torch.manual_seed(recipe.train.seed)
    args = model_arguments(recipe, data)
    check_fits(recipe, recipe.model.name, args, (data.train.channels, *data.train.size))
    return create_model(recipe.model.name, **args), args


def default_out_dir(recipe: Recipe) -> Path:
    return Path("runs") / f"{recipe.name}-{dt.datetime.now():%Y%m%d-%H%M%S}"


def train_recipe(
    recipe: Recipe,
    data_source: str | None = None,
    out_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
) -> TrainOutcome:
    if resume and out_dir is None:
        raise CnnlabError("--resume needs --out DIR: the run folder holding checkpoint.pt")
    if resume:
        recipe = resumed_recipe(Path(out_dir), recipe)  # type: ignore[arg-type]
    if data_source:
        recipe.data.source = data_source
    if out_dir is not None and Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise CnnlabError(f"--out {out_dir} is a file; give a folder for the run")
    check_weights_available(recipe.model.name, dict(recipe.model.args))  # before any decoding
    ddp = distributed.setup(recipe.train.device)  # under torchrun: join the process group
    data = prepare_data(recipe.data)
    check_trainable(data)
    check_savable(recipe, data)
    model, args = build_model(recipe, data)
    out = Path(out_dir) if out_dir else default_out_dir(recipe)
    if ddp is not None:
        out = Path(ddp.same_everywhere(str(out)))  # rank 0's run folder
    if resume:  # verified before anything is written: a refused --resume changes nothing
        if not (out / CHECKPOINT).is_file():
            raise CnnlabError(f"--resume: no {CHECKPOINT} in {out}")
        check_resume(out, model, recipe)
    if not distributed.is_main():  # the other ranks train their share; rank 0 writes
        return TrainOutcome(out, fit_model(model, data, recipe, out, resume, False), {}, data)
    with run_folder(out):
        return _train_in(out, recipe, data, model, args, resume, progress)


class RunFinished(CnnlabError):
    """`--resume` of a run that finished: nothing to do, and nothing is changed."""


def resumed_recipe(out: Path, given: Recipe) -> Recipe:
    """`given` with the data source the run was trained on (out/recipe.yaml's: a `--data`
    path, not the recipe's dataset name, which would download it); the checkpoint still
    refuses any other difference. A finished run (its bundle written after its last
    checkpoint) raises RunFinished: resuming it would retrain nothing and rewrite its bundle."""
    from cnnlab.config import load_recipe

    saved = out / "recipe.yaml"
    if not saved.is_file():
        raise CnnlabError(f"--resume: {out} holds no recipe.yaml and no checkpoint.pt: not a "
                          "run folder (train into it without --resume first)")  # fmt: skip
    bundle, ckpt = out / "bundle.json", out / CHECKPOINT
    if bundle.is_file() and (not ckpt.is_file() or bundle.stat().st_mtime >= ckpt.stat().st_mtime):
        raise RunFinished(f"{out} is a finished run (its bundle is written): nothing to resume, "
                          "nothing changed; train more in a new run: --out ANOTHER_DIR")  # fmt: skip
    source = load_recipe(saved).data.source
    if source != given.data.source:
        log.info("--resume: reading the run's own data, %s", source)
        given.data.source = source
    return given


def check_savable(recipe: Recipe, data: PreparedData) -> None:
    """What the bundle will hold from the recipe and the data, within the bounds every load
    checks (`cnnlab.bundle.check`), before any training: never a trained model that cannot
    be saved."""
    from cnnlab.bundle.check import THRESHOLD_BOUNDS, check_normalisation, within

    check_normalisation(data.preprocess, "the data's normalisation (data.normalize)")
    if recipe.data.class_mode == "binary":
        within("the recipe", "decision.threshold", recipe.decision.threshold, THRESHOLD_BOUNDS,
               "where a bundle's threshold may lie")  # fmt: skip


@contextlib.contextmanager
def run_folder(out: Path) -> Iterator[Path]:
    """The run folder, with the temporaries a killed run left deleted; if the run fails, what
    it added is removed again (and the folder, if it made it), so a failed run leaves no
    half-written files. Ctrl+C keeps them: the checkpoint is there to `--resume` from."""
    existed = out.is_dir()
    out.mkdir(parents=True, exist_ok=True)
    before = set(os.listdir(out))
    clean_stale_temps(out)
    try:
        yield out
    except KeyboardInterrupt:
        raise
    except BaseException:
        for name in set(os.listdir(out)) - before:
            target = out / name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target, ignore_errors=True)
            else:
                target.unlink(missing_ok=True)
        clean_stale_temps(out)
        if not existed:
            with contextlib.suppress(OSError):
                out.rmdir()
        raise


def _train_in(
    out: Path,
    recipe: Recipe,
    data: PreparedData,
    model: nn.Module,
    args: dict[str, Any],
    resume: bool,
    progress: bool,
) -> TrainOutcome:
    file_log = _log_to(out / "train.log")
    try:
        save_recipe(recipe, out / "recipe.yaml")
        if data.skipped:
            log.warning("%d files were skipped while loading:", len(data.skipped))
            for path, reason in data.skipped[:50]:
                log.warning("  %s: %s", path, reason)
        listed = run_callbacks(recipe, out, (out / "recipe.yaml").read_text())
        try:
            result = fit_model(model, data, recipe, out, resume=resume, progress=progress,
                               callbacks=list(listed))  # fmt: skip
            metrics, ood = finish_run(out, model, args, data, recipe, result)
            for tb in listed:
                tb.add_images([out / f for f in RUN_FIGURES])
        finally:
            for tb in listed:
                tb.close()
    finally:
        logging.getLogger("cnnlab").removeHandler(file_log)
        file_log.close()
    return TrainOutcome(out, result, metrics, data)


RUN_FIGURES = ("curves.png", "confusion_matrix.png", "mistakes.png", "roc_curve.png",
               "reliability.png")  # fmt: skip


def finish_run(
    out: Path,
    model: nn.Module,
    args: dict[str, Any],
    data: PreparedData,
    recipe: Recipe,
    result: FitResult,
) -> tuple[dict[str, Any], Any]:
    """After the last step: the run's history and curves, the validation report (figures, the
    mistakes gallery, a warning for a degenerate model), the decision rule, the
    out-of-distribution check, then the bundle and its card."""
    from cnnlab.bundle.seal import seal_bundle
    from cnnlab.report.card import write_card
    from cnnlab.report.metrics import degenerate_warning

    write_history(out, result.history, result.steps)
    val_logits = validation_logits(model, data, recipe)
    decision = binary_decision(val_logits, data, recipe)
    metrics = validation_report(model, data, recipe, out, decision, val_logits)
    log.info("training took %.1f s; validation accuracy %s", result.train_seconds,
             f"{metrics['accuracy']:.2%}" if "accuracy" in metrics else "n/a")  # fmt: skip
    warning = degenerate_warning(metrics.get("confusion_matrix"), data.classes)
    if warning:
        log.warning(warning)
    ood = fit_ood_check(model, data, recipe)
    if ood is not None:
        save_ood(out, ood)
    hashes = keep_training_hashes(out, data)
    save_bundle(
        out,
        model,
        recipe.model.name,
        args,
        data.preprocess,
        data.classes,
        class_mode=recipe.data.class_mode,
        decision=decision,
        metrics=metrics,
        recipe=recipe.to_dict(),
        extra={
            "data": data_summary(data),
            "training": {"seconds": round(result.train_seconds, 2), "runtime": result.runtime,
                         "cpu_capability": cpu_capability(), "epochs_run": len(result.history),
                         "loss_weighting": result.loss_weighting,
                         "loss": describe_losses(recipe.train, recipe.data.class_mode == "binary",
                                                 result.loss_weighting)},
            **({"ood": ood.record} if ood is not None else {}),
            **({"training_hashes": hashes} if hashes else {}),
            "command": " ".join(shlex.quote(a) for a in ["cnnlab", *sys.argv[1:]]) if sys.argv else "",
            **validation_scores(val_logits, data, recipe),
        },
    )  # fmt: skip
    write_card(out)
    seal_bundle(out)  # the card changed since save_bundle sealed it
    if recipe.data.class_mode == "binary" and recipe.data.external:
        record_external_validation(out, recipe.data.external)  # loads, records, re-seals
    return metrics, ood


def fit_ood_check(model: nn.Module, data: PreparedData, recipe: Recipe):
    """The bundle's out-of-distribution check (cnnlab.evaluate.ood_fit), unless the recipe turns it off."""
    from cnnlab.evaluate.ood_fit import fit_ood

    if not recipe.decision.ood_check:
        return None
    rt = choose_runtime(recipe.train.device, recipe.train.precision, recipe.train.channels_last)
    batch = min(recipe.train.eval_batch_size, 64 if data.train.size[0] >= 128 else 1024)
    held = None if recipe.train.train_on_val else data.val
    return fit_ood(model, data.train, held, data.preprocess, rt, recipe.decision.ood_percentile,
                   batch_size=batch, seed=recipe.train.seed)  # fmt: skip


def cpu_capability() -> str:
    """The CPU's vector instructions as PyTorch uses them (AVX2, AVX512, ...): speed depends on it."""
    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except (AttributeError, RuntimeError):  # pragma: no cover - older torch
        return ""


def validation_logits(model: nn.Module, data: PreparedData, recipe: Recipe) -> torch.Tensor | None:
    if data.val is None or recipe.train.train_on_val:
        return None
    rt = choose_runtime(recipe.train.device, recipe.train.precision, recipe.train.channels_last)
    batch = min(recipe.train.eval_batch_size, 64 if data.val.size[0] >= 128 else 4096)
    return predict_logits(model, data.val.images, data.preprocess, rt, batch)


def binary_decision(
    logits: torch.Tensor | None, data: PreparedData, recipe: Recipe
) -> dict[str, Any] | None:
    """Temperature and threshold for binary models, fitted on the validation split (see
    train.calibration); None (argmax) for the others."""
    from cnnlab.evaluate.calibration import fit_decision

    if recipe.data.class_mode != "binary":
        return None
    labels = data.val.labels if logits is not None and data.val is not None else None
    decision = fit_decision(logits, labels, data.classes, recipe.decision)
    log.info("decision: predict %s when p >= %.4f (%s; temperature %.3f)", decision["positive_class"],
             decision["threshold"], decision["policy_text"], decision["temperature"])  # fmt: skip
    return decision


def validation_scores(
    logits: torch.Tensor | None, data: PreparedData, recipe: Recipe
) -> dict[str, Any]:
    """A binary bundle keeps its validation logits (a few KB), so a rule refitted later
    (`cnnlab recalibrate`) can report the validation figures at the new threshold."""
    if logits is None or recipe.data.class_mode != "binary" or data.val is None:
        return {}
    return {"validation_scores": {"logits": [round(float(v), 4) for v in logits[:, 0]],
                                  "labels": [int(v) for v in data.val.labels]}}  # fmt: skip


def record_external_validation(out: Path, folder: str) -> None:
    """The recipe's `data.external` folder, judged by the new bundle's own rule and recorded."""
    from cnnlab.bundle.loading import load_bundle
    from cnnlab.evaluate.external import record_evaluation
    from cnnlab.evaluate.scores import evaluate_bundle

    bundle = load_bundle(out)
    report = evaluate_bundle(bundle, folder, "test")
    name = record_evaluation(bundle, report, folder)
    log.info("external validation on %s (%d images): AUC %.4f, sensitivity %.4f, specificity "
             "%.4f at threshold %.4f", name, report["n"], report["auc"], report["sensitivity"],
             report["specificity"], report["threshold"])  # fmt: skip


def validation_report(
    model: nn.Module,
    data: PreparedData,
    recipe: Recipe,
    out: Path,
    decision: dict[str, Any] | None = None,
    logits: torch.Tensor | None = None,
) -> dict[str, Any]:
    if data.val is None or recipe.train.train_on_val:
        return {}
    if logits is None:
        logits = validation_logits(model, data, recipe)
    decision = decision or {}
    binary = recipe.data.class_mode == "binary"
    threshold = decision.get("threshold", 0.5) if binary else None
    report = full_report(logits, data.val.labels, data.classes, threshold,
                         decision.get("temperature", 1.0), binary, out,
                         f"validation ({len(data.val)} images)")  # fmt: skip
    save_confusion_matrix(report, data.classes, out, "validation")
    probs = probabilities(logits, decision.get("temperature", 1.0))
    save_mistakes(
        out, data.val, probs, threshold, data.classes, f"validation ({len(data.val)} images)"
    )
    report["split"] = "val"
    return report


def keep_training_hashes(out: Path, data: PreparedData) -> dict[str, Any] | None:
    """Fingerprints of every training and validation image (no pixels), so that `evaluate` and
    `recalibrate` can tell when their data holds images the model has seen; None for data
    without files (IDX, npz, downloaded CIFAR)."""
    from cnnlab.data.fingerprints import Fingerprint, fingerprint_paths, save_training_hashes
    from cnnlab.fileio import data_name

    paths = [*(data.train.paths or [])] + [*((data.val.paths or []) if data.val else [])]
    if not paths or data.train.paths is None:
        return None
    prints = [fp for fp in fingerprint_paths(paths) if isinstance(fp, Fingerprint)]
    return save_training_hashes(out, prints, data_name(data.source))


def data_summary(data: PreparedData) -> dict[str, Any]:
    counts = {"train": data.train.class_counts()}
    if data.val is not None:
        counts["val"] = data.val.class_counts()
    return {
        "source": data.source,
        "format": data.format,
        "val_origin": data.val_origin,
        "counts": counts,
        "skipped": len(data.skipped),
    }


def _log_to(path: Path) -> logging.Handler:
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logging.getLogger("cnnlab").addHandler(handler)
    return handler
