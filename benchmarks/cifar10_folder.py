"""CIFAR-10 from a folder of JPEGs, two ways, side by side on the same validation split.

(a) the brief's way: keras_cifar10_cnn (1,250,858 parameters), Adam 1e-3, batch 64, a torch
    DataLoader over the folder that opens, decodes and transforms every image per sample
    (torchvision: random flip, to tensor /255), for as many epochs as fit in --budget seconds.
(b) cnnlab's way: `cnnlab train recipes/cifar10_folder_fast.yaml` (cifarnet, the folder
    decoded once into a cached uint8 tensor, batched augmentation, one-cycle SGD), or the
    recipe named by --recipe (e.g. cifar10_folder_94).
Both hold out the same stratified 10% of the training folder (seed 0) and report accuracy
on it; the official test split is not in ../shared/data and is checked from outside.

    flock /tmp/cnnlab-cpu.lock python benchmarks/cifar10_folder.py [--budget 600]
        [--archive ../shared/data/cifar10-train.tar.gz] [--out runs/RECIPE]
        [--skip-brief] [--skip-fast] [--recipe cifar10_folder_fast] [--set train.epochs=10 ...]
"""

from __future__ import annotations

import argparse
import os
import tarfile
import tempfile
import time
from pathlib import Path

import torch
import torch.nn as nn
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from cnnlab.runtime.device import set_threads

ROOT = Path(__file__).resolve().parents[1]


class JpegFolder(Dataset):
    """What torchvision's ImageFolder does per item: open the file, decode, transform."""

    def __init__(self, paths: list[str], labels: list[int], train: bool) -> None:
        self.paths, self.labels = paths, labels
        steps = [transforms.RandomHorizontalFlip()] if train else []
        self.transform = transforms.Compose([*steps, transforms.ToTensor()])

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        with Image.open(self.paths[i]) as img:
            return self.transform(img.convert("RGB")), self.labels[i]


def same_split(folder: Path) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """The (path, label) lists of cnnlab's own held-out split: data.val_fraction 0.1, seed 0."""
    from cnnlab.config import DataConfig
    from cnnlab.data.sources import load_source
    from cnnlab.data.splits import stratified_split

    train = load_source(str(folder), color_mode="rgb").splits["train"]
    tr, va = stratified_split(train.labels, DataConfig().val_fraction, DataConfig().split_seed)
    pick = lambda idx: [(train.paths[i], int(train.labels[i])) for i in idx.tolist()]  # noqa: E731
    return pick(tr), pick(va)


def run_brief(folder: Path, budget: float, workers: int) -> dict:
    from cnnlab.models import create_model

    train_items, val_items = same_split(folder)
    torch.manual_seed(0)
    model = create_model("keras_cifar10_cnn")
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    train_dl = DataLoader(JpegFolder(*zip(*train_items, strict=True), train=True), batch_size=64,
                          shuffle=True, num_workers=workers, persistent_workers=workers > 0)  # fmt: skip
    val_dl = DataLoader(JpegFolder(*zip(*val_items, strict=True), train=False), batch_size=256,
                        num_workers=workers)  # fmt: skip
    epochs, seconds, acc = 0, [], float("nan")
    started = time.perf_counter()
    while True:
        t = time.perf_counter()
        model.train()
        for x, y in train_dl:
            opt.zero_grad()
            loss_fn(model(x), y).backward()
            opt.step()
        seconds.append(time.perf_counter() - t)
        epochs += 1
        model.eval()
        hits = 0
        with torch.no_grad():
            for x, y in val_dl:
                hits += int((model(x).argmax(1) == y).sum())
        acc = hits / len(val_items)
        spent = time.perf_counter() - started
        print(f"  brief: epoch {epochs}: {seconds[-1]:.0f} s, val accuracy {acc:.2%}", flush=True)
        if spent + seconds[-1] > budget:
            break
    return {"epochs": epochs, "s_per_epoch": sum(seconds) / len(seconds),
            "train_s": sum(seconds), "val_acc": acc, "n_val": len(val_items)}  # fmt: skip


def run_fast(folder: Path, out: Path, overrides: list[str], name: str) -> dict:
    from cnnlab.config import load_recipe
    from cnnlab.train.run import train_recipe

    recipe = load_recipe(ROOT / "recipes" / f"{name}.yaml", overrides)
    t = time.perf_counter()
    outcome = train_recipe(recipe, str(folder), out, progress=False)
    total = time.perf_counter() - t
    history = outcome.result.history
    return {"epochs": len(history),
            "s_per_epoch": sum(r["seconds"] for r in history) / len(history),
            "train_s": outcome.result.train_seconds, "val_acc": outcome.metrics["accuracy"],
            "n_val": outcome.metrics["n"], "total_s": total, "bundle": str(out)}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archive", default=str(ROOT.parent / "shared/data/cifar10-train.tar.gz"))
    ap.add_argument("--budget", type=float, default=600, help="seconds of training for (a)")
    ap.add_argument("--workers", type=int, default=2, help="DataLoader workers for (a)")
    ap.add_argument("--recipe", default="cifar10_folder_fast", help="cnnlab's recipe for (b)")
    ap.add_argument("--out", help="run folder for (b) (default: runs/RECIPE)")
    ap.add_argument("--set", action="append", default=[], help="recipe override for (b)")
    ap.add_argument("--skip-brief", action="store_true")
    ap.add_argument("--skip-fast", action="store_true")
    args = ap.parse_args()
    from cnnlab.runtime.device import machine_line

    print(machine_line(), flush=True)  # what the times below depend on
    threads = set_threads(0)

    work = Path(tempfile.mkdtemp(prefix="cnnlab-cifar-bench-"))
    with tarfile.open(args.archive) as tf:
        tf.extractall(work, filter="data")
    folder = work
    print(f"{args.archive} extracted to {folder}; {threads} threads; "
          f"load average {os.getloadavg()[0]:.2f}", flush=True)  # fmt: skip
    rows = {}
    ours = f"(b) cnnlab {args.recipe}"
    if not args.skip_fast:
        out = Path(args.out or ROOT / "runs" / args.recipe)
        rows[ours] = run_fast(folder, out, args.set, args.recipe)
    if not args.skip_brief:
        rows["(a) brief: keras_cifar10_cnn, DataLoader"] = run_brief(
            folder, args.budget, args.workers
        )
    print(
        f"\nCIFAR-10 folder (50,000 JPEGs), {threads} threads, validation = the same held-out 10%"
    )
    print(f"{'':<42}{'epochs':>7}{'s/epoch':>9}{'train s':>9}{'val acc':>9}")
    for name, r in rows.items():
        print(f"{name:<42}{r['epochs']:>7}{r['s_per_epoch']:>9.1f}{r['train_s']:>9.0f}"
              f"{r['val_acc']:>9.2%}")  # fmt: skip
    if ours in rows:
        r = rows[ours]
        print(f"(b) wall time incl. first decode of the folder and the report: {r['total_s']:.0f} s; "
              f"bundle in {r['bundle']}")  # fmt: skip
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
