"""Tiny image folders and weight files for the transfer-learning tests (no network, no ../shared)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import timm
import torch
from PIL import Image
from safetensors.torch import save_file

CLASSES = ("circle", "square", "stripes")


def draw(kind: str, seed: int, size: int = 40) -> Image.Image:
    """A class-specific pattern on noise, so a small CNN can learn something in a few steps."""
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
    yy, xx = np.mgrid[:size, :size]
    if kind == "circle":
        mask = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size / 3) ** 2
    elif kind == "square":
        mask = (abs(yy - size / 2) < size / 4) & (abs(xx - size / 2) < size / 4)
    else:
        mask = (xx // 4) % 2 == 0
    img[mask] = rng.integers(180, 255, 3, dtype=np.uint8)
    return Image.fromarray(img)


def make_folder(
    root: Path, per_class: dict[str, int], classes: tuple[str, ...] = CLASSES, seed: int = 0
) -> Path:
    """`root/<split>/<class>/<n>.jpg` for each split in `per_class` (e.g. {"train": 10, "test": 4})."""
    for s, (split, count) in enumerate(per_class.items()):
        for c, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                draw(name, seed * 10_000 + s * 1000 + c * 100 + i).save(folder / f"{i:03d}.jpg", quality=90)
    return root


def save_timm_weights(path: Path, name: str = "resnet10t", num_classes: int = 1000, seed: int = 0) -> dict:
    """Random weights of a timm model with its classifier, saved as safetensors with timm key names."""
    torch.manual_seed(seed)
    model = timm.create_model(name, pretrained=False, num_classes=num_classes)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path))
    return state
