"""The DataModule base: subclasses fill in `build_datasets` (and optionally `build_transforms`).

Loaders, workers, pinning, seeding of workers and DDP sharding are the template's; Lightning adds a
DistributedSampler under DDP by itself.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from trainforge.data.checks import check_labels
from trainforge.data.sampling import BalancedSampler, dataset_labels
from trainforge.data.workers import auto_num_workers
from trainforge.training.distributed import eval_sampler
from trainforge.training.resumable import ResumableDataLoader


@dataclass
class Splits:
    """What `build_datasets` returns. `val`, `test` and `predict` may be None."""

    train: Dataset
    val: Dataset | None = None
    test: Dataset | None = None
    predict: Dataset | None = None


class TransformDataset(Dataset):
    """Applies a transform to the input of an `(input, target)` dataset; keeps `ids` for predictions."""

    def __init__(self, base: Dataset, transform: Callable | None) -> None:
        self.base = base
        self.transform = transform
        self.ids = getattr(base, "ids", None)

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        x, y = self.base[index]
        return (self.transform(x) if self.transform is not None else x), y


class DataModule(L.LightningDataModule):
    """Base DataModule. Subclasses set `class_names` in `__init__` and implement the hooks below.

    Args:
        batch_size: Samples per step on each device.
        num_workers: Loader processes; "auto" picks one per usable core but one (up to 16), 0 loads in the
            main process.
        pin_memory: Page-locked batches for fast host-to-GPU copies; None means "when a GPU is used".
        split_seed: Seed of the train/val/test split; separate from the training seed on purpose, so
            that runs with different seeds are compared on the same split.
        sampler: None (shuffle) or "balanced": every class drawn equally often per training epoch
            (template/data/sampling.py; shards per rank under DDP by itself).
        sampler_mode: "oversample" (repeat minority samples) or "undersample" (drop majority samples).
        persistent_workers: Keep loader workers (and what they cache) alive between epochs; off only to
            measure what they save (`make bench`).
    """

    class_names: list[str]
    in_chans: int = 3

    def __init__(
        self,
        batch_size: int = 64,
        num_workers: int | Literal["auto"] = "auto",
        pin_memory: bool | None = None,
        split_seed: int = 0,
        sampler: Literal["balanced"] | None = None,
        sampler_mode: Literal["oversample", "undersample"] = "oversample",
        persistent_workers: bool = True,
    ) -> None:
        super().__init__()
        self.persistent_workers = persistent_workers
        self.sampler = sampler
        self.sampler_mode = sampler_mode
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.split_seed = split_seed
        self.splits: Splits | None = None
        self.train_device_transform: Callable | None = None  # from build_device_transform, in setup()

    # ----------------------------------------------------------------- user hooks
    def build_datasets(self) -> Splits:
        """Return the datasets of `(input, class index)` pairs, before transforms."""
        raise NotImplementedError(f"{type(self).__name__}.build_datasets: return Splits(train=..., val=...)")

    def build_transforms(self, stage: Literal["train", "eval"]) -> Callable | None:
        """Return the transform applied to each input: `train` for training, `eval` for the rest."""
        return None

    def build_device_transform(self) -> Callable | None:
        """Optionally return a batched transform that training batches go through once on the device
        (e.g. `DeviceAugment`: GPU augmentation of uint8 batches); evaluation batches never do."""
        return None

    # ---------------------------------------------------------------- the wiring
    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def setup(self, stage: str | None = None) -> None:
        if self.splits is not None:
            return
        raw = self.build_datasets()
        check_labels(raw, self.num_classes, type(self).__name__, bool(getattr(self, "multi_label", False)))
        train_tf, eval_tf = self.build_transforms("train"), self.build_transforms("eval")
        self.train_device_transform = self.build_device_transform()
        self.splits = Splits(
            train=TransformDataset(raw.train, train_tf),
            val=TransformDataset(raw.val, eval_tf) if raw.val is not None else None,
            test=TransformDataset(raw.test, eval_tf) if raw.test is not None else None,
            predict=TransformDataset(raw.predict, eval_tf) if raw.predict is not None else None,
        )

    def device_transform(self, x: torch.Tensor) -> torch.Tensor:
        """A training batch's input, already on its device, through `build_device_transform`'s transform."""
        transform = self.train_device_transform
        if transform is None:
            return x
        return transform.to(x.device)(x) if isinstance(transform, torch.nn.Module) else transform(x)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        trainer = self.trainer
        if self.train_device_transform is None or trainer is None or not trainer.training:
            return batch
        x, *rest = batch
        return (self.device_transform(x), *rest)

    def model_data_config(self) -> dict[str, Any] | None:
        """The attached model's input config (`data_config`: timm's pretrained size and normalisation), or
        None before a trainer with a model is attached."""
        model = getattr(self.trainer, "lightning_module", None) if self.trainer is not None else None
        return getattr(model, "data_config", None)

    def _workers(self) -> int:
        if self.num_workers == "auto":
            return auto_num_workers()
        return int(self.num_workers)

    def _loader(self, dataset: Dataset | None, split: str, shuffle: bool) -> DataLoader:
        if dataset is None:
            raise ValueError(
                f"{type(self).__name__} has no '{split}' dataset; build_datasets returned None for it"
            )
        workers = self._workers()
        pin = self.pin_memory if self.pin_memory is not None else torch.cuda.is_available()
        # Training: a loader whose position and RNG streams resume exactly mid-epoch (training/resumable.py),
        # with the balanced sampler when asked. Evaluation under DDP: no padded duplicates, so each sample
        # counts once (training/distributed.py).
        sampler = (
            self._train_sampler(dataset) if split == "train" else (None if shuffle else eval_sampler(dataset))
        )
        return (ResumableDataLoader if shuffle else DataLoader)(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle and sampler is None,
            sampler=sampler,
            num_workers=workers,
            pin_memory=pin,
            persistent_workers=workers > 0 and self.persistent_workers,
            drop_last=shuffle and len(dataset) > self.batch_size,  # type: ignore[arg-type]
        )

    def _train_sampler(self, dataset: Dataset) -> Sampler | None:
        """The balanced sampler, sharded for this rank; a DistributedSampler, so Lightning keeps it."""
        if self.sampler is None:
            return None
        if self.sampler != "balanced":
            raise ValueError(f"data.sampler: use null or 'balanced', got '{self.sampler}'")
        trainer = self.trainer
        replicas, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
        seed = int(os.environ.get("PL_GLOBAL_SEED", 0))
        return BalancedSampler(dataset_labels(dataset), self.sampler_mode, replicas, rank, seed)

    def _split(self, name: str) -> Dataset | None:
        self.setup()
        assert self.splits is not None
        return getattr(self.splits, name)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self._split("train"), "train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self._split("val"), "val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self._split("test"), "test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        # Without a dedicated predict set, predict on the test split (then val) so that `predict` always works.
        dataset = self._split("predict") or self._split("test") or self._split("val")
        return self._loader(dataset, "predict", shuffle=False)

    def has_split(self, name: str) -> bool:
        return self._split(name) is not None
