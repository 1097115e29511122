"""Stochastic Weight Averaging on Lightning's callback, with the result made the run's model.

Lightning's `StochasticWeightAveraging` averages the weights at each epoch start from `swa_epoch_start`,
swaps the first scheduler for an epoch-interval SWALR (one optimizer and one scheduler only: #6571,
#6963, #15916), recomputes BatchNorm statistics in one extra epoch and copies the average into the
model at the end; resume works because callback state is restored before scheduler state (#11665).
What it leaves out, added here:

- The SWA weights are written to `checkpoints/swa.ckpt` and made the checkpoint that `fit` validates,
  tests and reports (through ModelCheckpoint's best path), instead of the best pre-SWA epoch.
- SWA with SGDR (rule): the SGDR schedule is kept (no SWALR), and weights are averaged only at the epoch
  ends where an SGDR cycle ends (the learning rate is at its minimum), as in Izmailov et al.'s cyclical
  SWA and Huang et al.'s snapshot ensembles. Cycle ends must then fall on epoch ends (integer `T_0` and
  `T_mult` in epochs); at least one must lie in [`swa_epoch_start`, `max_epochs`] (epochs finished).
- Lightning's `swa_epoch_start` is 1-based: averaging starts at the start of that epoch, i.e. with the
  weights after `swa_epoch_start - 1` epochs (`swa_epoch_start: 1` includes the untrained weights).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import StochasticWeightAveraging
from lightning.pytorch.utilities import rank_zero_info

from trainforge.training.optim import SGDR


class SWA(StochasticWeightAveraging):
    """`StochasticWeightAveraging` whose averaged weights become the run's checkpoint (`swa.ckpt`).

    Args are Lightning's (`swa_lrs`, `swa_epoch_start`, `annealing_epochs`, `annealing_strategy`...).
    With an `sgdr` schedule, `swa_lrs` is ignored and averaging happens at cycle ends (module docstring).
    """

    def __init__(
        self, swa_lrs: float | list[float] = 0.01, swa_epoch_start: int | float = 0.8, **kwargs: Any
    ) -> None:
        super().__init__(swa_lrs=swa_lrs, swa_epoch_start=swa_epoch_start, **kwargs)
        self._cycle_end_epochs: set[int] | None = None
        self.checkpoint_path: Path | None = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Before Lightning adds its extra BatchNorm epoch to max_epochs, which would skew steps per epoch.
        total, epochs = int(trainer.estimated_stepping_batches), max(1, trainer.max_epochs or 1)
        super().on_fit_start(trainer, pl_module)
        sgdr = _find_sgdr(trainer)
        if sgdr is None:
            return
        steps_per_epoch = total // epochs
        ends = sgdr.cycle_end_steps(total)
        if any(step % steps_per_epoch for step in ends):
            raise ValueError(
                "SWA with sgdr: cycle ends must fall on epoch ends; use integer T_0/T_mult (epochs) and no "
                "fractional warmup_epochs"
            )
        start = int(self._swa_epoch_start)  # an int by now (Lightning converts a fraction in on_fit_start)
        self._cycle_end_epochs = {
            step // steps_per_epoch for step in ends if step // steps_per_epoch >= start
        }
        if not self._cycle_end_epochs:
            raise ValueError(
                f"SWA with sgdr: no cycle ends at or after epoch swa_epoch_start={start} within max_epochs="
                f"{epochs}; cycle ends at epochs {[s // steps_per_epoch for s in ends]}"
            )
        if self.n_averaged is None:
            self.n_averaged = torch.tensor(self._init_n_averaged, dtype=torch.long, device=pl_module.device)
        rank_zero_info(f"SWA with SGDR: averaging at the ends of epochs {sorted(self._cycle_end_epochs)}")

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._cycle_end_epochs is None:
            super().on_train_epoch_start(trainer, pl_module)
            return
        epoch = trainer.current_epoch  # weights now are those after `epoch` epochs
        self._average_if_cycle_end(epoch, pl_module)
        if epoch == self.swa_end + 1:  # the extra BatchNorm epoch that on_fit_start added
            self._initialized = True
            self.transfer_weights(self._average_model, pl_module)
            self.reset_batch_norm_and_save_state(pl_module)
            trainer.fit_loop.max_batches += 1
            trainer.fit_loop._skip_backward = True
            self._accumulate_grad_batches = trainer.accumulate_grad_batches
            trainer.accumulate_grad_batches = trainer.fit_loop.max_batches

    def _average_if_cycle_end(self, epoch: int, pl_module: L.LightningModule) -> None:
        assert self._cycle_end_epochs is not None and self._average_model is not None
        if epoch in self._cycle_end_epochs and epoch > self._latest_update_epoch:
            self._average_model = self._average_model.to(pl_module.device)
            self.update_parameters(self._average_model, pl_module, self.n_averaged, self._avg_fn)
            self._latest_update_epoch = epoch

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._cycle_end_epochs is not None and not self._model_contains_batch_norm:
            self._average_if_cycle_end(trainer.current_epoch, pl_module)
        super().on_train_end(trainer, pl_module)
        # current_epoch was advanced past the last epoch run: SWA finished iff it passed swa_end.
        if trainer.current_epoch <= self.swa_end or self._max_epochs == -1:
            return
        ckpt = trainer.checkpoint_callback
        dirpath = Path(ckpt.dirpath) if ckpt is not None and ckpt.dirpath else Path(trainer.default_root_dir)
        self.checkpoint_path = dirpath / "swa.ckpt"
        trainer.save_checkpoint(self.checkpoint_path)
        if ckpt is not None:
            # after_fit validates, tests and reports ModelCheckpoint's best path: make it the SWA weights.
            ckpt.best_model_path = str(self.checkpoint_path)
        rank_zero_info(
            f"SWA: averaged {int(self.n_averaged or 0)} snapshots; weights in {self.checkpoint_path}"
        )


def _find_sgdr(trainer: L.Trainer) -> SGDR | None:
    for config in trainer.lr_scheduler_configs:
        if isinstance(config.scheduler, SGDR):
            return config.scheduler
    return None
