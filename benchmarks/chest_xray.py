"""Training time on the chest X-rays: the brief's setup vs `recipes/chest_xray_best.yaml`.

Baseline (brief point 10, done the brief's way): EfficientNet-Lite0 (ImageNet weights),
frozen, the brief's head, RGB JPEGs decoded per sample in a DataLoader with per-sample
torchvision augmentation (rotation 15, shifts 0.1, zoom 0.1), Adam 1e-3, batch 32, 10
epochs, on the same patient-grouped training split. Its 10 epochs take long on 2 cores,
so by default it runs `--baseline-epochs 1` and the time is scaled to 10 epochs (printed
as such); `--baseline-epochs 10` measures them all.
cnnlab: `train_recipe` on chest_xray_best (feature extraction, head, fine-tuning,
calibration); the bundle it writes is the one `--out` keeps.

    flock /tmp/cnnlab-cpu.lock python benchmarks/chest_xray.py [--data ../shared/data/chest_xray/train]
        [--out runs/pneumonia] [--baseline-epochs 1] [--skip-best] [--skip-baseline]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from cnnlab.config import load_recipe
from cnnlab.data import prepare_data
from cnnlab.data.preprocess import IMAGENET_MEAN, IMAGENET_STD
from cnnlab.models import create_model
from cnnlab.runtime.device import set_threads
from cnnlab.train.run import train_recipe

ROOT = Path(__file__).resolve().parents[1]
BRIEF_EPOCHS = 10


class JpegFolder(Dataset):
    """What Keras' flow_from_directory / torchvision's ImageFolder do per item: open, augment."""

    def __init__(self, paths: list[str], labels: torch.Tensor) -> None:
        self.paths, self.labels = paths, labels
        self.transform = transforms.Compose([
            transforms.Resize((224, 224)),
            transforms.RandomAffine(degrees=15, translate=(0.1, 0.1), scale=(0.9, 1.1)),
            transforms.ToTensor(),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ])  # fmt: skip

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        with Image.open(self.paths[i]) as img:
            return self.transform(img.convert("RGB")), float(self.labels[i])


def baseline(data_path: str, epochs: int) -> dict:
    torch.manual_seed(0)
    recipe = load_recipe(ROOT / "recipes" / "chest_xray_brief.yaml")
    recipe.data.source = data_path
    data = prepare_data(recipe.data)
    loader = DataLoader(JpegFolder(data.train.paths, data.train.labels), batch_size=32,
                        shuffle=True, num_workers=0)  # fmt: skip
    model = create_model("efficientnet_lite0", in_channels=3, num_classes=1, freeze="all")
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    seconds = []
    for _ in range(epochs):
        model.train()
        model.on_train_mode()
        start = time.perf_counter()
        hits = seen = 0
        for x, y in loader:
            out = model(x)[:, 0]
            loss = loss_fn(out, y.float())
            opt.zero_grad()
            loss.backward()
            opt.step()
            hits += int(((out > 0).float() == y).sum())
            seen += len(y)
        seconds.append(time.perf_counter() - start)
        print(
            f"  brief setup: epoch {len(seconds)} {seconds[-1]:.0f} s, train acc {hits / seen:.2%}"
        )
    per_epoch = sum(seconds) / len(seconds)
    return {"epochs_measured": epochs, "seconds_per_epoch": per_epoch,
            "seconds_10_epochs": per_epoch * BRIEF_EPOCHS, "train_images": len(data.train)}  # fmt: skip


def best(data_path: str, out: Path) -> dict:
    """Train chest_xray_best from a cold feature cache; the bundle records the CLI command that
    does the same (`cnnlab train ...`), since that is how anyone retrains it."""
    from cnnlab.bundle import update_bundle_meta
    from cnnlab.train.run import write_medical_card

    recipe = load_recipe(ROOT / "recipes" / "chest_xray_best.yaml")
    with tempfile.TemporaryDirectory() as cold:
        os.environ["CNNLAB_FEATURE_CACHE"] = cold
        start = time.perf_counter()
        outcome = train_recipe(recipe, data_path, out, progress=False)
        wall = time.perf_counter() - start
        del os.environ["CNNLAB_FEATURE_CACHE"]
    rel = os.path.relpath(data_path, ROOT)
    update_bundle_meta(out, command=f"cnnlab train recipes/chest_xray_best.yaml --data {rel} --out {out.name}",
                       trained_by="benchmarks/chest_xray.py (train_recipe, the same as that command)")  # fmt: skip
    write_medical_card(out)
    m = outcome.metrics
    return {"train_seconds": outcome.result.train_seconds, "wall_seconds": wall, "out": str(out),
            **{k: m.get(k) for k in ("accuracy", "auc", "sensitivity", "specificity", "threshold")}}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared/data/chest_xray/train"))
    ap.add_argument("--out", default=str(ROOT / "runs" / "bench-chest_xray_best"))
    ap.add_argument("--baseline-epochs", type=int, default=1)
    ap.add_argument("--skip-best", action="store_true")
    ap.add_argument("--skip-baseline", action="store_true")
    args = ap.parse_args()
    from cnnlab.cli import setup_logging

    setup_logging()
    threads = set_threads(0)
    print(f"chest X-ray training time, {threads} threads, torch {torch.__version__}")
    results = {}
    if not args.skip_best:
        results["best"] = best(args.data, Path(args.out))
    if not args.skip_baseline:
        results["brief"] = baseline(args.data, max(1, min(args.baseline_epochs, BRIEF_EPOCHS)))
    print()
    print(f"{'setup':<62}{'seconds':>9}")
    if "brief" in results:
        b = results["brief"]
        how = ("measured" if b["epochs_measured"] == BRIEF_EPOCHS
               else f"{b['epochs_measured']} measured x {BRIEF_EPOCHS / b['epochs_measured']:g}")  # fmt: skip
        print(f"{'brief: frozen backbone, DataLoader aug, 10 epochs (' + how + ')':<62}"
              f"{b['seconds_10_epochs']:>9.0f}")  # fmt: skip
    if "best" in results:
        r = results["best"]
        print(
            f"{'cnnlab chest_xray_best: training (features+head+fine-tune)':<62}{r['train_seconds']:>9.0f}"
        )
        print(
            f"{'cnnlab chest_xray_best: wall, incl. data loading + calibration':<62}{r['wall_seconds']:>9.0f}"
        )
        print(f"  validation (patient-grouped): accuracy {r['accuracy']:.2%}, AUC {r['auc']:.4f}, "
              f"sensitivity {r['sensitivity']:.4f}, specificity {r['specificity']:.4f} "
              f"at threshold {r['threshold']:.4f}; bundle in {r['out']}")  # fmt: skip
    if "best" in results and "brief" in results:
        speedup = results["brief"]["seconds_10_epochs"] / results["best"]["train_seconds"]
        print(f"speed-up in training time: {speedup:.1f}x")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
