"""Synthetic images for benchmarks: the loader costs almost nothing, so the model's speed is what is measured."""

from __future__ import annotations

import time
from typing import Literal

import torch
from torch.utils.data import Dataset

from trainforge.data.datamodule import DataModule, Splits
from trainforge.data.device_augment import DeviceAugment


class SyntheticImages(Dataset):
    """`length` (image, label) pairs drawn from a small bank of fixed random images.

    A bank (not one tensor per index) keeps memory flat however many steps a benchmark runs, and the
    images are already float and normalised, like the output of a decoded-image cache.
    """

    def __init__(
        self,
        length: int,
        image_size: int,
        in_chans: int,
        num_classes: int,
        delay_s: float = 0.0,
        bank: int = 64,
        uint8: bool = False,
    ) -> None:
        generator = torch.Generator().manual_seed(0)
        shape = (min(bank, length), in_chans, image_size, image_size)
        if uint8:
            self.images = torch.randint(0, 256, shape, dtype=torch.uint8, generator=generator)
        else:
            self.images = torch.randn(shape, generator=generator)
        self.length = length
        self.num_classes = num_classes
        self.delay_s = delay_s

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if self.delay_s > 0:
            time.sleep(self.delay_s)
        return self.images[index % len(self.images)], index % self.num_classes


class SyntheticDataModule(DataModule):
    """Random images of one size and `num_classes` labels; for `make bench` and smoke tests.

    Args:
        num_samples: Training images per epoch (a benchmark needs at least steps x batch_size).
        eval_samples: Images in the validation and test splits each.
        image_size: Height and width in pixels.
        num_classes: Number of labels.
        in_chans: Image channels.
        load_delay_s: Seconds of sleep per image, to stand in for a slow decoder (a data-bound setup).
        uint8: Training batches are uint8 and normalised on the device (`DeviceAugment`), as with an image
            DataModule's `gpu_augment`: 4x fewer bytes through the loader and the host-to-GPU copy.
    """

    def __init__(
        self,
        num_samples: int = 2048,
        eval_samples: int = 64,
        image_size: int = 64,
        num_classes: int = 10,
        in_chans: int = 3,
        batch_size: int = 32,
        num_workers: int | Literal["auto"] = "auto",
        pin_memory: bool | None = None,
        split_seed: int = 0,
        load_delay_s: float = 0.0,
        uint8: bool = False,
        persistent_workers: bool = True,
    ) -> None:
        super().__init__(
            batch_size=batch_size,
            num_workers=num_workers,
            pin_memory=pin_memory,
            split_seed=split_seed,
            persistent_workers=persistent_workers,
        )
        if min(num_samples, image_size, num_classes, in_chans) < 1 or min(eval_samples, load_delay_s) < 0:
            raise ValueError(
                "data.init_args: num_samples, image_size, num_classes and in_chans must be >= 1 and "
                f"eval_samples, load_delay_s >= 0, got {num_samples=}, {image_size=}, {num_classes=}, {in_chans=}, "
                f"{eval_samples=}, {load_delay_s=}"
            )
        self.num_samples = num_samples
        self.eval_samples = eval_samples
        self.image_size = image_size
        self.in_chans = in_chans
        self.load_delay_s = load_delay_s
        self.uint8 = uint8
        self.class_names = [f"class_{i}" for i in range(num_classes)]

    def build_datasets(self) -> Splits:
        def make(length: int, uint8: bool = False) -> SyntheticImages | None:
            if length == 0:
                return None
            return SyntheticImages(
                length, self.image_size, self.in_chans, self.num_classes, self.load_delay_s, uint8=uint8
            )

        # Only training batches go through the device transform, so the evaluation splits stay float.
        train, evaluation = make(self.num_samples, self.uint8), make(self.eval_samples)
        return Splits(train=train, val=evaluation, test=make(self.eval_samples))

    def build_device_transform(self) -> DeviceAugment | None:
        return DeviceAugment(None, [0.5] * self.in_chans, [0.25] * self.in_chans) if self.uint8 else None
