"""Exact mid-epoch resume: a training DataLoader whose position and random streams go into the checkpoint.

Lightning restores the loop's batch counter but restarts a plain DataLoader at its first batch with a new
shuffle (it warns "your dataloader is not resumable"), and checkpoints hold no RNG state. torchdata's
StatefulDataLoader is not a dependency of the template, so this small loader does the part we need:
- the data pipeline (sampler shuffle and the random train transforms when `num_workers=0`) draws from its
  own torch RNG stream, swapped in around each fetch, so the model's random draws cannot shift it;
- `state_dict` holds the data stream at the start of the epoch, the batches the loop has consumed (told by
  `ResumableLoaderCallback`) and the model's torch RNG state; after a restore the epoch's iterator is
  rebuilt from that stream and the consumed batches are fetched again and dropped (so worker RNG streams
  replay as well), then the model's RNG is restored. Costs one re-read of the consumed batches on resume.
Python's `random` and NumPy states are not captured (the template uses neither inside a training step).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from lightning.fabric.utilities.data import _set_sampler_epoch
from lightning.pytorch import Callback, LightningModule, Trainer
from torch.utils.data import DataLoader


def _model_rng() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_model_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class ResumableDataLoader(DataLoader):
    """A DataLoader with `state_dict`/`load_state_dict` that Lightning saves in the fit loop's state.

    `max_batches` caps an epoch at whole optimizer steps (data/batching.py): every rank then runs the same
    number of batches, and 1 process and N ranks the same number of steps.
    """

    def __init__(self, *args: Any, max_batches: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_batches = max_batches
        self._data_rng: torch.Tensor | None = None  # the data stream now
        self._epoch_rng: torch.Tensor | None = None  # the data stream when this epoch's iterator was made
        self.consumed: int | None = None  # batches of this epoch the loop has finished; None: epoch done
        self._sampler_epoch: int | None = None
        self._restore: dict[str, Any] | None = None

    def _swap_in(self) -> torch.Tensor:
        """Make the data stream current; return the model's state to put back."""
        model = torch.get_rng_state()
        if self._data_rng is None:
            # A stream of its own, derived from the run's seed (seed_everything) and so reproducible.
            generator = torch.Generator().manual_seed(torch.initial_seed() + 7919)
            self._data_rng = generator.get_state()
        torch.set_rng_state(self._data_rng)
        return model

    def _swap_out(self, model: torch.Tensor) -> None:
        self._data_rng = torch.get_rng_state()
        torch.set_rng_state(model)

    def __iter__(self) -> Iterator[Any]:
        restore, self._restore = self._restore, None
        skip = 0
        if restore is not None:
            mid_epoch = restore["consumed"] is not None
            self._data_rng = restore["epoch_rng"] if mid_epoch else restore["data_rng"]
            skip = restore["consumed"] or 0
            if restore["sampler_epoch"] is not None:
                # Lightning builds the resumed iterator before it sets the epoch of a DistributedSampler.
                _set_sampler_epoch(self, restore["sampler_epoch"] + (0 if mid_epoch else 1))
        sampler = getattr(self.batch_sampler, "sampler", self.sampler)
        self._sampler_epoch = getattr(sampler, "epoch", None)
        self._epoch_rng = None
        model = self._swap_in()
        self._epoch_rng = self._data_rng.clone() if self._data_rng is not None else None
        try:
            iterator = super().__iter__()
        finally:
            self._swap_out(model)
        self.consumed = 0
        for _ in range(skip):
            self._next(iterator)
        self.consumed = skip
        if restore is not None:
            _set_model_rng(restore["model_rng"])
        return self._generate(iterator, skip)

    def _next(self, iterator: Iterator[Any]) -> Any:
        model = self._swap_in()
        try:
            return next(iterator)
        finally:
            self._swap_out(model)

    def __len__(self) -> int:
        length = super().__len__()
        return length if self.max_batches is None else min(length, self.max_batches)

    def _generate(self, iterator: Iterator[Any], fetched: int) -> Iterator[Any]:
        while self.max_batches is None or fetched < self.max_batches:
            try:
                batch = self._next(iterator)
            except StopIteration:
                return
            fetched += 1
            yield batch

    def state_dict(self) -> dict[str, Any]:
        return {
            "epoch_rng": self._epoch_rng,
            "data_rng": self._data_rng,
            "consumed": self.consumed,
            "sampler_epoch": self._sampler_epoch,
            "model_rng": _model_rng(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._restore = state


class ResumableLoaderCallback(Callback):
    """Tells each ResumableDataLoader (and the streaming loader, data/shard_dataset.py) how many batches of
    the epoch the loop has consumed."""

    def _loaders(self, trainer: Trainer) -> list[Any]:
        combined = trainer.fit_loop._combined_loader
        flattened = combined.flattened if combined is not None else []
        return [
            loader
            for loader in flattened
            if isinstance(loader, ResumableDataLoader) or hasattr(loader, "restore_pending")
        ]

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # Lightning builds the train loader and its iterator before restoring the loops when the module asks
        # for `estimated_stepping_batches` (our schedules do), so the saved loader states are never loaded
        # (its `setup_data` does that only the first time). Load them here and rebuild the iterator.
        fit_loop = trainer.fit_loop
        if not fit_loop._combined_loader_states_to_load:
            return
        fit_loop._load_combined_loader_states()
        if any(
            getattr(loader, "restore_pending", getattr(loader, "_restore", None) is not None)
            for loader in self._loaders(trainer)
        ):
            iter(fit_loop._data_fetcher)

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        done = batch_idx + 1 >= trainer.num_training_batches
        for loader in self._loaders(trainer):
            # A checkpoint taken after the epoch's last batch starts the next epoch afresh on resume.
            loader.consumed = None if done else batch_idx + 1
