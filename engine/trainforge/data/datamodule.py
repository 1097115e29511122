"""The DataModule base: subclasses fill in `build_datasets` (and optionally `build_transforms`).

What a subclass declares in `__init__`: its task (`self.task = Multiclass([...])`, `Regression([...])`...,
or just `self.class_names` for a multiclass task), and for images `self.in_chans`, for other inputs
`self.input_shape`. Loaders, workers, pinning, samplers, DDP sharding, the checks of the targets against
the task, and the preprocessing saved with every checkpoint are the engine's.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler

from trainforge.data.batching import BatchPlan, trainer_plan
from trainforge.data.distributed import eval_sampler
from trainforge.data.resumable import ResumableDataLoader
from trainforge.data.sampling import BalancedSampler, dataset_labels
from trainforge.data.workers import auto_num_workers
from trainforge.errors import ConfigError, TemplateError
from trainforge.tasks import Binary, Multiclass, Task

SPLITS = ("train", "val", "test", "predict")


@dataclass
class Splits:
    """What `build_datasets` returns: datasets of `(input, target)` pairs. `val`, `test`, `predict` may be
    None. Roles: `val` selects (best epoch, early stopping), `test` is what a run reports."""

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


class ImageFileInputs(Dataset):
    """`(PIL image, -1)` from file paths, converted to `mode`; ids are the paths."""

    def __init__(self, paths: list[Path], mode: str) -> None:
        self.paths, self.mode = paths, mode
        self.ids = [str(p) for p in paths]

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        with Image.open(self.paths[index]) as image:
            return image.convert(self.mode), -1


class DataModule(L.LightningDataModule):
    """Base DataModule. Subclasses declare their task and implement the hooks below.

    Args:
        batch_size: The GLOBAL batch of one optimizer step, divided over the ranks (nodes x devices) and
            `trainer.accumulate_grad_batches` micro-steps, so one config optimises the same on 1 process
            and on N ranks (data/batching.py; a size that does not divide is refused in one line).
        num_workers: Loader processes; "auto" picks one per usable core but one (up to 16), 0 loads in the
            main process.
        pin_memory: Page-locked batches for fast host-to-GPU copies; None means "when a GPU is used".
        split_seed: Seed of the train/val/test split; separate from the training seed on purpose, so
            that runs with different seeds are compared on the same split.
        sampler: None (shuffle) or "balanced": every class drawn equally often per training epoch
            (data/sampling.py; shards per rank under DDP by itself). Classification tasks only.
        sampler_mode: "oversample" (repeat minority samples) or "undersample" (drop majority samples).
        persistent_workers: Keep loader workers (and what they cache) alive between epochs; off only to
            measure what they save (`make bench`).
        max_batch_per_device: None, or the most samples one device holds at once: a larger share of the
            global batch is reached by gradient accumulation instead (same optimisation, more micro-steps).
    """

    in_chans: int = 3
    input_shape: list[int] | None = None

    def __init__(
        self,
        batch_size: int = 64,
        num_workers: int | Literal["auto"] = "auto",
        pin_memory: bool | None = None,
        split_seed: int = 0,
        sampler: Literal["balanced"] | None = None,
        sampler_mode: Literal["oversample", "undersample"] = "oversample",
        persistent_workers: bool = True,
        max_batch_per_device: int | None = None,
    ) -> None:
        super().__init__()
        self.persistent_workers = persistent_workers
        self.max_batch_per_device = max_batch_per_device
        self.sampler = sampler
        self.sampler_mode = sampler_mode
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.split_seed = split_seed
        self.raw: Splits | None = None
        self._views: dict[str, Dataset | None] = {}
        self._preprocessing: dict[str, Any] | None = None
        self.train_device_transform: Callable | None = None  # from build_device_transform, in setup()

    # ----------------------------------------------------------------- user hooks
    def build_datasets(self) -> Splits:
        """Return the datasets of `(input, target)` pairs, before transforms."""
        raise NotImplementedError(f"{type(self).__name__}.build_datasets: return Splits(train=..., val=...)")

    def build_transforms(self, stage: Literal["train", "eval"]) -> Callable | None:
        """Return the transform applied to each input: `train` for training, `eval` for everything else
        (validation, test, predict, export). Read `self.preprocessing` for sizes and normalisation."""
        return None

    def build_device_transform(self) -> Callable | None:
        """Optionally return a batched transform that training batches go through once on the device
        (e.g. `DeviceAugment`: GPU augmentation of uint8 batches); evaluation batches never do."""
        return None

    def resolve_preprocessing(self) -> dict[str, Any]:
        """The evaluation preprocessing as plain values (sizes, normalisation...), resolved once per run
        and saved with every checkpoint, so predict and export reproduce it exactly without re-deriving it."""
        return {}

    def files_dataset(self, paths: list[Path]) -> Dataset:
        """Image files read as this DataModule reads its own inputs, before the eval transform, with target
        -1: what `make predict DATA=<folder>` runs on. Override for other file types."""
        if self.input_shape is not None:
            raise TemplateError(
                f"{type(self).__name__} takes inputs of shape {self.input_shape}, not image files: predict on one "
                "of its splits (DATA=test|val|train|predict), or override files_dataset"
            )
        return ImageFileInputs(paths, "L" if self.in_chans == 1 else "RGB")

    # ---------------------------------------------------------------- what the data declares
    @property
    def task(self) -> Task:
        """The task: set `self.task` in `__init__`, or override `build_task` (read once, when first needed)."""
        if getattr(self, "_task", None) is None:
            self._task = self.build_task()
        return self._task

    @task.setter
    def task(self, value: Task) -> None:
        self._task = value

    def build_task(self) -> Task:
        """The task when `__init__` set none: multiclass over `self.class_names`."""
        names = getattr(self, "class_names", None)
        if names is None:
            raise TemplateError(
                f"{type(self).__name__} declares no task: in __init__, set self.task (e.g. Multiclass([...]), "
                "Binary([...]), Multilabel([...]), Regression([...]) from trainforge.tasks) or self.class_names"
            )
        return Multiclass(list(names))

    @property
    def num_classes(self) -> int:
        return len(self.task.names)

    @property
    def preprocessing(self) -> dict[str, Any]:
        if self._preprocessing is None:
            self._preprocessing = dict(self.resolve_preprocessing())
        return self._preprocessing

    def state_dict(self) -> dict[str, Any]:
        """Saved in every checkpoint by Lightning: the resolved preprocessing."""
        return {"preprocessing": self.preprocessing}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if "preprocessing" in state_dict:
            self._preprocessing = dict(state_dict["preprocessing"])
            self._views = {}  # transforms are rebuilt from the restored values

    # ---------------------------------------------------------------- the wiring
    def setup(self, stage: str | None = None) -> None:
        if self.raw is not None:
            return
        if self.sampler is not None and not isinstance(self.task, (Multiclass, Binary)):
            raise ConfigError(
                f"data.sampler={self.sampler}: balanced sampling needs one class per sample, and this is a "
                f"{self.task.kind} task; leave data.sampler null"
            )
        raw = self.build_datasets()
        for split in ("train", "val", "test"):
            dataset = getattr(raw, split)
            labels = dataset_labels(dataset, strict=False) if dataset is not None else None
            if labels is not None and labels.numel():
                self.task.check_targets(labels, f"{type(self).__name__}: the {split} split")
        self.raw = raw
        self.train_device_transform = self.build_device_transform()

    def view(self, split: str) -> Dataset | None:
        """The split as loaders see it: with the train transform for `train`, the eval one otherwise."""
        if split not in self._views:
            self._views[split] = self._view(split, "train" if split == "train" else "eval")
        return self._views[split]

    def eval_view(self, split: str) -> Dataset | None:
        """Any split (train included) through the evaluation transform: for probes and predictions."""
        return self._view(split, "eval")

    def _view(self, split: str, stage: Literal["train", "eval"]) -> Dataset | None:
        self.setup()
        assert self.raw is not None
        dataset = getattr(self.raw, split)
        return TransformDataset(dataset, self.build_transforms(stage)) if dataset is not None else None

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
        None without one (no trainer, or a backbone that declares none)."""
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
        plan = self.batch_plan()
        if split == "train" and self.trainer is not None:
            # The accumulation the plan needs (Lightning's GradientAccumulationScheduler sets it the same way);
            # read by the fit loop and by `estimated_stepping_batches`, both after this loader exists.
            self.trainer.accumulate_grad_batches = plan.accumulation
        workers = self._workers()
        pin = self.pin_memory if self.pin_memory is not None else torch.cuda.is_available()
        # Training: a loader whose position and RNG streams resume exactly mid-epoch (data/resumable.py),
        # with the balanced sampler when asked. Evaluation under DDP: no padded duplicates, so each sample
        # counts once (data/distributed.py).
        sampler = (
            self._train_sampler(dataset) if split == "train" else (None if shuffle else eval_sampler(dataset))
        )
        # Whole optimizer steps only, the same count on every rank and on one process: the epoch's samples
        # (all ranks together) // the global batch, each step `accumulation` loader batches.
        whole = {"max_batches": self._steps_per_epoch(dataset, sampler, plan) * plan.accumulation}
        return (ResumableDataLoader if shuffle else DataLoader)(
            dataset,
            **(whole if shuffle else {}),
            batch_size=plan.per_device,
            shuffle=shuffle and sampler is None,
            sampler=sampler,
            num_workers=workers,
            pin_memory=pin,
            persistent_workers=workers > 0 and self.persistent_workers,
            drop_last=shuffle and len(dataset) > self.batch_size,  # type: ignore[arg-type]
        )

    @staticmethod
    def _steps_per_epoch(dataset: Dataset, sampler: Sampler | None, plan: BatchPlan) -> int:
        total = getattr(sampler, "total_size", None) or len(dataset)  # type: ignore[arg-type]
        return max(1, total // plan.global_batch)  # one partial step for a set smaller than one batch

    def batch_plan(self) -> BatchPlan:
        """`batch_size` (global) split over the attached trainer's ranks and accumulation steps."""
        return trainer_plan(self.batch_size, self.trainer, self.max_batch_per_device)

    def _train_sampler(self, dataset: Dataset) -> Sampler | None:
        """The balanced sampler, sharded for this rank; a DistributedSampler, so Lightning keeps it."""
        if self.sampler is None:
            return None
        if self.sampler != "balanced":
            raise ValueError(f"data.sampler: use null or 'balanced', got '{self.sampler}'")
        trainer = self.trainer
        replicas, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
        seed = int(os.environ.get("PL_GLOBAL_SEED", 0))
        return BalancedSampler(dataset_labels(dataset).tolist(), self.sampler_mode, replicas, rank, seed)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.view("train"), "train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.view("val"), "val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.view("test"), "test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        # Without a dedicated predict set, predict on the test split (then val) so that `predict` always works.
        name = next((s for s in ("predict", "test", "val") if self.has_split(s)), "predict")
        return self._loader(self.view(name), "predict", shuffle=False)

    def has_split(self, name: str) -> bool:
        self.setup()
        assert self.raw is not None
        return getattr(self.raw, name) is not None

    def summary_fields(self) -> dict[str, Any]:
        """What summary.json says about the data: which split selects and which one is reported."""
        return {
            "task": self.task.describe(),
            "selected_on": "val" if self.has_split("val") else None,
            "evaluated_on": "test" if self.has_split("test") else "val (no test split)",
        }
