"""Augmentation throughput on 150x150 RGB images: the brief's full Keras-style augmentation.

cnnlab's BatchAugment (one affine grid per batch of 32, fill_mode nearest) against the
baseline a PyTorch user writes today: torchvision transforms.v2 RandomAffine +
RandomHorizontalFlip applied per sample (as a Dataset's __getitem__ does), on the same
uint8 images. Both in one process, at 1 and at all threads; decoding is not timed.

    flock /tmp/cnnlab-cpu.lock python benchmarks/augment_throughput.py [--images 512]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch
from torchvision.transforms import v2

from cnnlab.config import AugmentConfig
from cnnlab.data.augment import BatchAugment

ROOT = Path(__file__).resolve().parents[1]
BRIEF = dict(rotation_range=40, width_shift_range=0.2, height_shift_range=0.2, shear_range=0.2,
             zoom_range=0.2, horizontal_flip=True, fill_mode="nearest")  # fmt: skip


def sample_images(n: int) -> tuple[torch.Tensor, str]:
    """Real chest X-rays at 150x150 RGB when ../shared/data is there, else synthetic ones."""
    from cnnlab.data.decode import decode_many

    folder = ROOT.parent / "shared" / "data" / "chest_xray" / "train" / "NORMAL"
    if folder.is_dir():
        files = sorted(folder.iterdir())[:n]
        arrays = [a for a, _ in decode_many(files, "rgb", (150, 150), "stretch") if a is not None]
        return torch.from_numpy(np.stack(arrays)), f"{len(arrays)} chest X-rays"
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, 3, 150, 150), generator=g, dtype=torch.uint8), "synthetic"


def time_batched(images: torch.Tensor, batch: int, reps: int) -> float:
    augment = BatchAugment(AugmentConfig(**BRIEF))
    gen = torch.Generator().manual_seed(0)
    augment(images[:batch].float(), gen)  # warm-up
    t = time.perf_counter()
    for _ in range(reps):
        for i in range(0, len(images), batch):
            augment(images[i : i + batch].float(), gen)
    return reps * len(images) / (time.perf_counter() - t)


def time_per_sample(images: torch.Tensor, reps: int) -> float:
    # the same ranges in torchvision's terms: shear 0.2 degrees, zoom as scale (0.8, 1.2)
    tf = v2.Compose([
        v2.RandomAffine(degrees=40, translate=(0.2, 0.2), scale=(0.8, 1.2), shear=0.2,
                        interpolation=v2.InterpolationMode.BILINEAR),
        v2.RandomHorizontalFlip(),
        v2.ToDtype(torch.float32),
    ])  # fmt: skip
    tf(images[0])
    t = time.perf_counter()
    for _ in range(reps):
        for img in images:
            tf(img)
    return reps * len(images) / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=512)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    from cnnlab.runtime.device import machine_line

    print(machine_line(), flush=True)  # what the times below depend on
    images, what = sample_images(args.images)
    cores = len(os.sched_getaffinity(0))
    print(f"{what}, 3x150x150 uint8; the brief's augmentation: {BRIEF}")
    print(f"load average {os.getloadavg()[0]:.2f}")
    print(f"{'threads':>8}  {'cnnlab BatchAugment':>22}  {'torchvision v2 per sample':>26}  ratio")
    for threads in sorted({1, cores}):
        torch.set_num_threads(threads)
        ours = time_batched(images, args.batch, args.reps)
        theirs = time_per_sample(images, args.reps)
        print(f"{threads:>8}  {ours:>15,.0f} img/s  {theirs:>19,.0f} img/s  {ours / theirs:5.2f}x")


if __name__ == "__main__":
    main()
