"""Augmentation on the training device: uint8 batches in, normalised float batches out.

With `gpu_augment` the loader workers only decode, resize and crop to a fixed square (uint8, 4x fewer
bytes to pin and copy than float32); the random crops, flips, colour jitter and erasing then run batched
on the GPU, each sample with its own random parameters (kornia: torchvision's v2 transforms draw one set
of parameters per call, i.e. the same crop for the whole batch).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class DeviceAugment(nn.Module):
    """`x` uint8 (B, C, H, W) -> float: optional per-sample RandomResizedCrop to `size`, flip, colour
    jitter and erasing (kornia), then (x / 255 - mean) / std.

    Args:
        size: Output side; None keeps the input size (normalisation only).
        mean: Per-channel mean of the normalisation (on the 0-1 scale, as timm's configs give it).
        std: Per-channel standard deviation.
        scale: RandomResizedCrop area range; None: no crop (the input is resized to `size` if it differs).
        hflip: Probability of a horizontal flip.
        color_jitter: Brightness/contrast/saturation strength (timm's meaning), 0 for none.
        re_prob: Random-erasing probability.
    """

    def __init__(
        self,
        size: int | None,
        mean: Sequence[float],
        std: Sequence[float],
        scale: tuple[float, float] | None = None,
        hflip: float = 0.0,
        color_jitter: float = 0.0,
        re_prob: float = 0.0,
    ) -> None:
        super().__init__()
        import kornia.augmentation as K  # imported here: only runs that ask for device augmentation need it

        self.size = size
        self.register_buffer(
            "mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False
        )
        self.register_buffer(
            "std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False
        )
        steps: list[nn.Module] = []
        if scale is not None and size is not None:
            steps.append(K.RandomResizedCrop((size, size), scale=tuple(scale), resample="bilinear"))
        if hflip > 0:
            steps.append(K.RandomHorizontalFlip(p=hflip))
        if color_jitter > 0:
            steps.append(K.ColorJiggle(color_jitter, color_jitter, color_jitter, p=1.0))
        self.augment = nn.Sequential(*steps)
        self.erase = K.RandomErasing(p=re_prob) if re_prob > 0 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype != torch.uint8:
            raise TypeError(
                f"DeviceAugment expects uint8 image batches, got {x.dtype}; with data.gpu_augment the "
                "DataModule's training transform must end in PILToTensor (no ToTensor/Normalize)"
            )
        x = x.float().div_(255)
        x = self.augment(x)
        if self.size is not None and x.shape[-2:] != (self.size, self.size):
            x = nn.functional.interpolate(x, size=(self.size, self.size), mode="bilinear", antialias=True)
        x = (x - self.mean) / self.std
        # Erasing after normalisation, as timm's RandomErasing: the erased patch is zero, the mean colour.
        return self.erase(x) if self.erase is not None else x
