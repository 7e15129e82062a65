"""A picture of what a recipe's augmentation does: originals beside augmented copies."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from cnnlab.config import Recipe
from cnnlab.data.archives import extract_archive, is_archive
from cnnlab.data.augment import BatchAugment
from cnnlab.data.decode import decode_file
from cnnlab.data.folder import find_folder_root, is_image_folder, scan_split, split_folders
from cnnlab.data.sources import load_source
from cnnlab.errors import CnnlabError


def sample_images(source: str, recipe: Recipe, n: int) -> torch.Tensor:
    """`n` training images (one class after another), as the recipe loads them: uint8 (n, C, H, W).

    An image folder decodes only the files it shows; other sources load as training does."""
    d = recipe.data
    size = tuple(d.image_size) if d.image_size else None
    path = Path(source).expanduser()
    if is_archive(path):
        path = extract_archive(path)
    if path.is_dir() and is_image_folder(path):
        layout = split_folders(find_folder_root(path))[0]
        lst = scan_split(layout.get("train") or layout.get("all") or next(iter(layout.values())))
        by_class = [[f for f in lst.files if f[3] == k] for k in range(len(lst.classes))]
        picked = [f for f in itertools.chain(*itertools.zip_longest(*by_class)) if f][: n * 4]
        images = []
        for rel, *_ in picked:
            arr, _ = decode_file(f"{lst.root}/{rel}", d.color_mode, size, d.resize)
            if arr is not None and (not images or arr.shape == images[0].shape):
                images.append(arr)
            if len(images) == n:
                break
        if not images:
            raise CnnlabError(f"no readable training images in {source}")
        return torch.from_numpy(np.stack(images))
    loaded = load_source(str(path), None, d.image_size, d.color_mode, d.resize, d.cache)
    data = loaded.splits.get("train") or next(iter(loaded.splits.values()))
    step = max(1, len(data) // n)
    return data.images[::step][:n]


def augment_grid(
    images: torch.Tensor, recipe: Recipe, copies: int = 5, seed: int = 0
) -> np.ndarray:
    """uint8 (H', W', 3) grid: one row per image, the original first, then `copies` augmented."""
    augment = BatchAugment(recipe.augment)
    gen = torch.Generator().manual_seed(seed)
    x = images.float()
    columns = [x] + [augment(x.clone(), gen).clamp(0, 255) for _ in range(copies)]
    n, c, h, w = x.shape
    pad = max(2, h // 16)
    grid = torch.full((n * (h + pad) + pad, (copies + 1) * (w + pad) + pad + pad, 3), 255.0)
    for j, col in enumerate(columns):
        left = pad + j * (w + pad) + (pad if j else 0)  # a wider gap after the originals
        for i in range(n):
            top = pad + i * (h + pad)
            tile = col[i].permute(1, 2, 0)
            grid[top : top + h, left : left + w] = tile.expand(h, w, 3) if c == 1 else tile
    return grid.round().to(torch.uint8).numpy()


def write_preview(
    source: str, recipe: Recipe, out: str | Path, n: int = 6, copies: int = 5, seed: int = 0
) -> Path:
    """Write the grid as a PNG (atomically) and return its path."""
    from cnnlab.fileio import atomic_path

    grid = augment_grid(sample_images(source, recipe, n), recipe, copies, seed)
    scale = max(1, 96 // max(1, grid.shape[0] // max(n, 1)))  # small images drawn larger
    img = Image.fromarray(grid)
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST)
    out = Path(out)
    with atomic_path(out) as tmp:
        img.save(tmp, format="PNG")
    return out
