"""Stochastic Weight Averaging, with the result made the run's model.

- `SWA`: Lightning's `StochasticWeightAveraging` (SWALR replaces the schedule, BatchNorm recomputed in one
  extra pass, resume restores the average and SWALR: #11665). Lightning's `swa_epoch_start` is 1-based:
  averaging starts at the start of that epoch, i.e. with the weights after `swa_epoch_start - 1` epochs.
- `CycleAveraging`: SWA with SGDR, on Lightning's public `WeightAveraging`: the SGDR schedule is kept and
  the weights are averaged only at the epoch ends where a cycle ends (the learning rate at its minimum),
  as in Izmailov et al.'s cyclical SWA and Huang et al.'s snapshot ensembles; BatchNorm statistics are
  recomputed after training with torch's `update_bn`. Cycle ends must fall on epoch ends (integer `T_0`
  and `T_mult` in epochs).
Both write the averaged weights to `checkpoints/swa.ckpt` and make it the checkpoint that `fit`
validates, tests and reports (through ModelCheckpoint's best path), instead of the best pre-SWA epoch.
"""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import StochasticWeightAveraging, WeightAveraging
from lightning.pytorch.utilities import rank_zero_info
from torch.optim.swa_utils import update_bn

from trainforge.errors import ConfigError
from trainforge.training.checkpointing import report_weights
from trainforge.training.optim import SGDR


def _find_sgdr(trainer: L.Trainer) -> SGDR | None:
    return next((c.scheduler for c in trainer.lr_scheduler_configs if isinstance(c.scheduler, SGDR)), None)


class SWA(StochasticWeightAveraging):
    """`StochasticWeightAveraging` whose averaged weights become the run's checkpoint (`swa.ckpt`).

    Args are Lightning's (`swa_lrs`, `swa_epoch_start`, `annealing_epochs`, `annealing_strategy`...).
    """

    def __init__(
        self, swa_lrs: float | list[float] = 0.01, swa_epoch_start: int | float = 0.8, **kwargs: Any
    ) -> None:
        super().__init__(swa_lrs=swa_lrs, swa_epoch_start=swa_epoch_start, **kwargs)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        pl_module.configure_model()  # Lightning's setup copies the model: it must be built by then
        super().setup(trainer, pl_module, stage)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if _find_sgdr(trainer) is not None:
            raise ConfigError(
                "SWA replaces the schedule with SWALR, which would undo model.scheduler=sgdr; for SWA with SGDR "
                "use trainforge.training.swa.CycleAveraging (experiment swa_sgdr)"
            )
        super().on_fit_start(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_end(trainer, pl_module)
        # current_epoch was advanced past the last epoch run: SWA finished iff it passed swa_end.
        if trainer.current_epoch > self.swa_end and self._max_epochs != -1:
            report_weights(trainer, "swa.ckpt", f"SWA: averaged {int(self.n_averaged or 0)} snapshots")


class CycleAveraging(WeightAveraging):
    """Average the weights at the SGDR cycle ends from `swa_epoch_start` on (epochs finished, 1-based).

    Validation and checkpoints use the average once it holds a snapshot (before that, the live weights).

    Args:
        swa_epoch_start: Average the cycle ends after at least this many finished epochs.
    """

    def __init__(self, swa_epoch_start: int = 1) -> None:
        super().__init__(use_buffers=False)  # BatchNorm statistics: recomputed for the average at the end
        self.swa_epoch_start = swa_epoch_start
        self.cycle_end_epochs: set[int] = set()

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        sgdr = _find_sgdr(trainer)
        if sgdr is None:
            raise ConfigError("CycleAveraging averages at SGDR cycle ends: set model.scheduler=sgdr")
        total, epochs = int(trainer.estimated_stepping_batches), max(1, trainer.max_epochs or 1)
        steps_per_epoch = total // epochs
        ends = sgdr.cycle_end_steps(total)
        if any(step % steps_per_epoch for step in ends):
            raise ConfigError(
                "CycleAveraging: cycle ends must fall on epoch ends; use integer T_0/T_mult (epochs) and no "
                "fractional warmup_epochs"
            )
        self.cycle_end_epochs = {
            s // steps_per_epoch for s in ends if s // steps_per_epoch >= self.swa_epoch_start
        }
        if not self.cycle_end_epochs:
            raise ConfigError(
                f"CycleAveraging: no cycle ends at or after epoch swa_epoch_start={self.swa_epoch_start} within "
                f"max_epochs={epochs}; cycle ends at epochs {[s // steps_per_epoch for s in ends]}"
            )
        rank_zero_info(f"SWA with SGDR: averaging at the ends of epochs {sorted(self.cycle_end_epochs)}")

    def should_update(self, step_idx: int | None = None, epoch_idx: int | None = None) -> bool:
        return (
            epoch_idx is not None and epoch_idx + 1 in self.cycle_end_epochs
        )  # epoch_idx: 0-based, just ended

    @property
    def n_averaged(self) -> int:
        # The base class keeps its AveragedModel in a protected attribute; nothing public exposes the count.
        return int(self._average_model.n_averaged) if self._average_model is not None else 0

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.n_averaged:
            super().on_validation_epoch_start(trainer, pl_module)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.n_averaged:
            super().on_validation_epoch_end(trainer, pl_module)

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        if self.n_averaged:
            super().on_save_checkpoint(trainer, pl_module, checkpoint)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_end(trainer, pl_module)  # the average becomes the model
        update_bn(trainer.train_dataloader, pl_module, device=pl_module.device)
        report_weights(trainer, "swa.ckpt", f"SWA: averaged {self.n_averaged} cycle ends")
