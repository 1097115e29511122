"""What the image-folder and CSV DataModules share: image files as a dataset, a decoded-image cache,
and timm transforms built from the backbone's pretrained config.

The model exposes `data_config` (timm `resolve_data_config` of its backbone); the DataModule reads it
from `self.trainer.lightning_module` in `setup()`, so input size and normalisation always follow the
backbone. Without a trainer (a DataModule used alone) timm's ImageNet defaults apply.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, create_transform
from torch.utils.data import Dataset, Subset
from torchvision.transforms import InterpolationMode, v2

from trainforge.data.datamodule import DataModule
from trainforge.data.device_augment import DeviceAugment
from trainforge.data.split import stratified_split
from trainforge.errors import ConfigError

# timm's defaults, used when no model is attached to say otherwise.
DEFAULT_CONFIG = {
    "input_size": (3, 224, 224),
    "interpolation": "bicubic",
    "mean": IMAGENET_DEFAULT_MEAN,
    "std": IMAGENET_DEFAULT_STD,
    "crop_pct": 0.875,
    "crop_mode": "center",
}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


def is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


class ImageFiles(Dataset):
    """`(PIL image, target)` pairs from file paths. `cache_size`: keep decoded images in memory,
    resized once so their shorter side is at most `cache_size`, so later epochs do not decode again."""

    def __init__(self, paths: list[Path], targets: list[Any], cache_size: int | None = None) -> None:
        self.paths = paths
        self.targets = targets
        self.ids = [str(p) for p in paths]
        self.cache_size = cache_size
        self._cache: dict[int, dict[int, Image.Image]] = {}  # keyed by size, then index

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[Image.Image, Any]:
        target = self.targets[index]
        if self.cache_size is None:
            return load_image(self.paths[index]), target
        cache = self._cache.setdefault(self.cache_size, {})
        if index not in cache:
            cache[index] = shrink(load_image(self.paths[index]), self.cache_size)
        return cache[index], target


def load_image(path: Path) -> Image.Image:
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except (OSError, ValueError) as err:
        raise OSError(
            f"cannot read image {path}: {err}. Fix or remove the file, or set --data.skip_bad_images=true"
        ) from err


def shrink(img: Image.Image, size: int) -> Image.Image:
    """Downscale so the shorter side is `size` (never upscale): what every transform sees next."""
    short = min(img.size)
    if short <= size:
        return img
    scale = size / short
    return img.resize((round(img.width * scale), round(img.height * scale)), Image.Resampling.BICUBIC)


def drop_unreadable(paths: list[Path], targets: list[Any]) -> tuple[list[Path], list[Any]]:
    """Check every image; warn and list the files that cannot be read, keep the rest."""
    keep_paths, keep_targets, bad = [], [], []
    for path, target in zip(paths, targets, strict=True):
        try:
            with Image.open(path) as img:
                img.convert("RGB")
            keep_paths.append(path)
            keep_targets.append(target)
        except (OSError, ValueError) as err:
            bad.append(f"{path} ({err})")
    if bad:
        warnings.warn(f"skipped {len(bad)} unreadable images:\n  " + "\n  ".join(bad), stacklevel=2)
    return keep_paths, keep_targets


class ImageFilesDataModule(DataModule):
    """Base of the image DataModules: transforms, cache and class priors. Subclasses build the file lists.

    Args:
        image_size: Input side; default the backbone's pretrained input size.
        scale: RandomResizedCrop area range of the training crops.
        hflip: Probability of a horizontal flip.
        auto_augment: timm auto-augment policy, e.g. `rand-m9-mstd0.5` (off by default).
        re_prob: Random-erasing probability.
        color_jitter: Colour-jitter strength (off by default; timm ignores it with auto_augment).
        cache_images: Keep decoded images in memory, resized once, so epochs 2+ do not decode files.
        skip_bad_images: Check every file first; warn and list unreadable ones instead of failing.
        val_fraction: Share of the training images held out (stratified, seeded by `split_seed`) when there is no `val/`.
        predict_embeddings: `predict` also writes the pooled backbone features to embeddings.npz.
        gpu_augment: Training crops, flips, colour jitter and erasing run batched on the training device
            (`DeviceAugment`); the workers only resize and centre-crop to `image_size / crop_pct` and send
            uint8. The crops are then taken within that centre square. Evaluation is unchanged.
        **kwargs: the base `DataModule`'s other options: sampler, sampler_mode, persistent_workers.
    """

    def __init__(
        self,
        image_size: int | None = None,
        scale: tuple[float, float] = (0.35, 1.0),
        hflip: float = 0.5,
        auto_augment: str | None = None,
        re_prob: float = 0.0,
        color_jitter: float | None = None,
        cache_images: bool = True,
        skip_bad_images: bool = False,
        val_fraction: float = 0.15,
        batch_size: int = 32,
        num_workers: int | Literal["auto"] = "auto",
        pin_memory: bool | None = None,
        split_seed: int = 0,
        predict_embeddings: bool = False,
        gpu_augment: bool = False,
        **kwargs: Any,
    ) -> None:
        # The base's other options (sampler, sampler_mode, persistent_workers) pass through unchanged;
        # jsonargparse follows **kwargs there, so the CLI and --help still list them.
        super().__init__(batch_size, num_workers, pin_memory, split_seed, **kwargs)
        self.predict_embeddings = predict_embeddings
        self.image_size = image_size
        self.scale = tuple(scale)
        self.hflip = hflip
        self.auto_augment = auto_augment
        self.re_prob = re_prob
        self.color_jitter = color_jitter
        self.cache_images = cache_images
        self.skip_bad_images = skip_bad_images
        self.val_fraction = val_fraction
        self.gpu_augment = gpu_augment
        if gpu_augment and auto_augment:
            raise ValueError(
                f"data.auto_augment: '{auto_augment}' runs on the CPU path only; with data.gpu_augment=true "
                "set it to null, or set gpu_augment to false"
            )
        self.roles: dict[str, str] = {}

    @property
    def class_names(self) -> list[str]:
        return self.task.names

    def assign_roles(
        self, train: ImageFiles, val: ImageFiles | None, test: ImageFiles | None, stratify: bool = True
    ) -> tuple[Any, Any, Any]:
        """Train, selection (`val`) and reported (`test`) splits, never selecting on what is reported.

        With a test split, `val` is the folder's val split or a stratified, seeded `val_fraction` of train.
        Without one, the folder's val split (else another `val_fraction` of train) is what the run reports,
        and selection (best epoch, early stopping) uses a `val_fraction` carved from train.
        """
        self.roles = {"train": "train", "val": "val", "test": "test"}
        if test is None:
            if val is None:
                train, test = self._carve(train, stratify)
                self.roles["test"] = f"{self.val_fraction:.0%} of train (no val or test split)"
            else:
                test, self.roles["test"] = val, "val (no test split)"
            val = None
        if val is None:
            train, val = self._carve(train, stratify)
            self.roles["val"] = f"{self.val_fraction:.0%} of train (seeded by data.split_seed)"
        return train, val, test

    def _carve(self, dataset: Any, stratify: bool) -> tuple[Subset, Subset]:
        """A seeded `val_fraction` of `dataset` (a file list or a Subset of one), stratified by class unless
        the targets are multi-hot."""
        whole = dataset.dataset if isinstance(dataset, Subset) else dataset
        indices = list(dataset.indices) if isinstance(dataset, Subset) else list(range(len(dataset)))
        labels = np.asarray([whole.targets[i] for i in indices] if stratify else [0] * len(indices))
        keep, held = stratified_split(labels, [self.val_fraction], seed=self.split_seed)
        parts = []
        for positions in (keep, held):
            chosen = [indices[i] for i in positions]
            part = Subset(whole, chosen)
            part.ids = [whole.ids[i] for i in chosen]  # type: ignore[attr-defined]
            parts.append(part)
        return parts[0], parts[1]

    def resolve_preprocessing(self) -> dict[str, Any]:
        """The backbone's input config (from the attached model), then `image_size`; saved with checkpoints."""
        config = self.model_data_config()
        if config is None:
            model = getattr(self.trainer, "lightning_module", None) if self.trainer is not None else None
            if model is not None and self.image_size is None:
                raise ConfigError(
                    f"data.image_size: null takes the input size from the backbone's pretrained config, but "
                    f"{type(model).__name__}'s backbone ({type(model.backbone).__name__}) declares none (timm's "
                    "`pretrained_cfg`); set data.image_size (e.g. 224)"
                )
            config = DEFAULT_CONFIG
        config = {k: (list(v) if isinstance(v, tuple) else v) for k, v in dict(config).items()}
        if self.image_size is not None:
            config["input_size"] = [3, self.image_size, self.image_size]
        keys = ("input_size", "interpolation", "mean", "std", "crop_pct", "crop_mode")
        return {k: config[k] for k in keys if k in config}

    def data_config(self) -> dict[str, Any]:
        return self.preprocessing

    def resize_side(self) -> int:
        """The side the evaluation crop is taken from (input size / crop_pct): what the cache keeps and
        what `gpu_augment` sends from the workers."""
        config = self.data_config()
        return math.ceil(max(config["input_size"][1:]) / config.get("crop_pct", 0.875))

    def cache_size(self) -> int | None:
        return self.resize_side() if self.cache_images else None

    def files_dataset(self, paths: list[Path]) -> ImageFiles:
        """Image files read exactly as the training images are (RGB, the same cache shrink)."""
        return self.files(paths, [-1] * len(paths))

    def files(self, paths: list[Path], targets: list[Any]) -> ImageFiles:
        if self.skip_bad_images:
            paths, targets = drop_unreadable(paths, targets)
        return ImageFiles(paths, targets, self.cache_size())

    def build_transforms(self, stage: Literal["train", "eval"]) -> Any:
        config = self.data_config()
        common = {
            k: tuple(config[k]) if isinstance(config[k], list) else config[k]
            for k in ("input_size", "interpolation", "mean", "std", "crop_pct")
            if k in config
        }
        if stage == "train" and self.gpu_augment:
            side = self.resize_side()
            mode = InterpolationMode(config.get("interpolation", "bicubic"))
            return v2.Compose([v2.Resize(side, mode), v2.CenterCrop(side), v2.PILToTensor()])
        if stage == "eval":
            return create_transform(**common, is_training=False, crop_mode=config.get("crop_mode"))
        return create_transform(
            **common,
            is_training=True,
            scale=self.scale,
            hflip=self.hflip,
            auto_augment=self.auto_augment,
            re_prob=self.re_prob,
            color_jitter=self.color_jitter if self.color_jitter is not None else 0.0,
        )

    def build_device_transform(self) -> DeviceAugment | None:
        if not self.gpu_augment:
            return None
        config = self.data_config()
        return DeviceAugment(
            max(config["input_size"][1:]),
            config["mean"],
            config["std"],
            scale=self.scale,
            hflip=self.hflip,
            color_jitter=self.color_jitter or 0.0,
            re_prob=self.re_prob,
        )

    def summary_fields(self) -> dict[str, Any]:
        self.setup()
        roles = getattr(self, "roles", {})
        return {
            **super().summary_fields(),
            "selected_on": roles.get("val"),
            "evaluated_on": roles.get("test"),
        }
