"""`fit_image` resizes pixel for pixel as torchvision does (every bundle was trained with
torchvision's resize), on the CPU's native uint8 path and on the float one that CPUs without
AVX2 take, without importing torchvision (2 s of every process's first image)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import torchvision.transforms.v2.functional as TF

from cnnlab.data.images import fit_image


def torchvision_fit(img: torch.Tensor, size: list[int], policy: str) -> torch.Tensor:
    """The policies as cnnlab wrote them on torchvision before."""
    h, w = size
    ih, iw = img.shape[-2:]
    if (ih, iw) == (h, w):
        return img
    if policy == "stretch":
        return TF.resize(img, [h, w], antialias=True)
    if policy == "letterbox":
        scale = min(h / ih, w / iw)
        nh, nw = max(1, round(ih * scale)), max(1, round(iw * scale))
        img = TF.resize(img, [nh, nw], antialias=True)
        top, left = (h - nh) // 2, (w - nw) // 2
        return TF.pad(img, [left, top, w - nw - left, h - nh - top], fill=0)
    scale = max(h / ih, w / iw)
    nh, nw = max(h, round(ih * scale)), max(w, round(iw * scale))
    return TF.center_crop(TF.resize(img, [nh, nw], antialias=True), [h, w])


SHAPES = [(1, 28, 28), (3, 37, 53), (1, 500, 381), (3, 224, 224), (4, 5, 7), (3, 1024, 900)]
SIZES = [[28, 28], [32, 32], [224, 224], [64, 48], [300, 301]]


@pytest.mark.parametrize("capability", ["native", "DEFAULT"])
@pytest.mark.parametrize("policy", ["stretch", "letterbox", "center_crop"])
def test_fit_image_matches_torchvision_pixel_for_pixel(policy, capability, monkeypatch):
    if capability != "native":  # both read it at call time: the float path, rounded
        monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    gen = torch.Generator().manual_seed(0)
    for shape in SHAPES:
        img = torch.randint(0, 256, shape, dtype=torch.uint8, generator=gen)
        for size in SIZES:
            ours, theirs = fit_image(img, size, policy), torchvision_fit(img, size, policy)
            assert ours.shape == (shape[0], *size) and ours.dtype == torch.uint8
            assert torch.equal(ours, theirs), (shape, size, policy)
    batch = torch.randint(0, 256, (5, 3, 40, 60), dtype=torch.uint8, generator=gen)
    assert torch.equal(fit_image(batch, [32, 32], policy), torchvision_fit(batch, [32, 32], policy))


def test_fitting_an_image_does_not_import_torchvision():
    code = ("import sys, torch; from cnnlab.data.images import fit_image; "
            "fit_image(torch.zeros(3, 50, 70, dtype=torch.uint8), [32, 32], 'letterbox'); "
            "print('torchvision' in sys.modules)")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.strip() == "False", done.stderr
