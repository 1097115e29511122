"""Finders and debug modes: `python -m trainforge.tools.tune lr-find|bs-find|overfit [--experiment X] [overrides]`.

- `lr-find`: Lightning's Tuner learning-rate range test; saves `lr_find.png` and `lr_find.yaml` (a config
  fragment: `--config <run>/lr_find.yaml` uses the suggestion) in the run directory, prints the value.
- `bs-find`: Lightning's Tuner batch-size scaling (largest size that fits, rounded down to a multiple of
  8 for tensor cores) on one device; saves `bs_find.yaml` likewise, as `data.batch_size` (the global batch)
  and `data.max_batch_per_device` (so N ranks keep that global batch, and accumulate if a share is larger).
Options: `--steps N` (lr-find range-test steps, 100), `--max-trials N` (bs-find doublings, 10).
- `overfit`: trains on one batch (`trainer.overfit_batches=1`) until the training loss is below
  `--max-loss` (default 0.05); exits with status 1 and a loud message if it never gets there, which
  points at a bug in the model, loss or data wiring rather than at hyperparameters.
Everything else (configs, experiments, run directories, loggers) is `python -m trainforge fit`'s.
"""

from __future__ import annotations

import sys
from typing import Any

import lightning as L
import yaml
from lightning.pytorch.tuner import Tuner

from trainforge.cli import TemplateCLI
from trainforge.config_files import pop_value
from trainforge.launch import main as cli_main

MODES = ("lr-find", "bs-find", "overfit")
OVERFIT_DEFAULTS = [
    "--trainer.overfit_batches=1",
    "--trainer.max_epochs=150",
    "--trainer.check_val_every_n_epoch=50",
]


class StopBelow(L.Callback):
    """Stops training once the epoch's training loss is below `max_loss`; remembers the last loss."""

    def __init__(self, max_loss: float) -> None:
        self.max_loss = max_loss
        self.last: float | None = None

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        loss = trainer.callback_metrics.get("train/loss_epoch")
        if loss is not None:
            self.last = float(loss)
            if self.last < self.max_loss:
                trainer.should_stop = True


class TuneCLI(TemplateCLI):
    """TemplateCLI whose `fit` runs a finder (or the overfit check) instead of plain training."""

    mode = "lr-find"
    max_loss = 0.05
    steps = 100
    max_trials = 10

    def instantiate_trainer(self, **kwargs: Any) -> L.Trainer:
        trainer = super().instantiate_trainer(**kwargs)
        if self.mode == "overfit":
            self.stopper = StopBelow(self.max_loss)
            trainer.callbacks.append(self.stopper)
        return trainer

    def _run_subcommand(self, subcommand: str) -> None:
        if self.mode == "overfit":
            self._overfit()
            return
        tuner = Tuner(self.trainer)
        if self.mode == "lr-find":
            finder = tuner.lr_find(
                self.model,
                datamodule=self.datamodule,
                num_training=self.steps,
                update_attr=False,
                early_stop_threshold=None,  # short ranges diverge early; the plot shows where
            )
            assert finder is not None
            lr = finder.suggestion()
            if lr is None:
                raise SystemExit(
                    "lr-find: no suggestion (the loss never fell); widen the range or check the data"
                )
            finder.plot(suggest=True).savefig(self.run_dir / "lr_find.png", dpi=100)
            self._report("lr", float(f"{lr:.3g}"), {"model": {"init_args": {"lr": float(f"{lr:.3g}")}}})
        else:
            # What one device holds: a cap from the config would make every size fit (by accumulation).
            self.datamodule.max_batch_per_device = None
            size = tuner.scale_batch_size(
                self.model, datamodule=self.datamodule, mode="power", max_trials=self.max_trials
            )
            assert size is not None
            rounded = size - size % 8 if size >= 8 else size
            fragment = {"data": {"init_args": {"batch_size": rounded, "max_batch_per_device": rounded}}}
            self._report("batch_size", rounded, fragment, f" (found {size}; the most one device holds)")

    def _report(self, key: str, value: Any, fragment: dict[str, Any], note: str = "") -> None:
        name = "lr_find" if self.mode == "lr-find" else "bs_find"
        path = self.run_dir / f"{name}.yaml"
        if self.trainer.is_global_zero:
            path.write_text(yaml.safe_dump(fragment))
            print(f"suggested {key}: {value}{note}")
            print(f"use it: --config {path}   (or --{'model' if key == 'lr' else 'data'}.{key}={value})")
            if self.mode == "lr-find":
                print(f"plot: {self.run_dir / 'lr_find.png'}")
            print(f"run directory: {self.run_dir}", flush=True)

    def _overfit(self) -> None:
        self.trainer.fit(self.model, datamodule=self.datamodule, ckpt_path=self.config.fit.get("ckpt_path"))
        last = self.stopper.last
        if last is None or last >= self.max_loss:
            print(
                f"\n!!! OVERFIT CHECK FAILED: training loss {last} is not below {self.max_loss} after "
                f"{self.trainer.current_epoch} epochs on one batch. A model that cannot memorise one batch has "
                "a bug (labels, loss, frozen weights, a too small lr, augmentation or dropout left on). !!!\n",
                file=sys.stderr,
                flush=True,
            )
            raise SystemExit(1)
        print(
            f"overfit check passed: training loss {last:.4f} < {self.max_loss} after {self.trainer.current_epoch} epochs"
        )
        print(f"run directory: {self.run_dir}", flush=True)


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in MODES:
        raise SystemExit(
            f"usage: python -m trainforge.tools.tune {{{','.join(MODES)}}} [--experiment NAME] [overrides]"
        )
    mode, rest = argv[0], argv[1:]
    TuneCLI.mode = mode
    max_loss = pop_value(rest, "--max-loss")
    TuneCLI.max_loss = float(max_loss) if max_loss is not None else 0.05
    TuneCLI.steps = int(pop_value(rest, "--steps") or 100)
    TuneCLI.max_trials = int(pop_value(rest, "--max-trials") or 10)
    defaults = OVERFIT_DEFAULTS if mode == "overfit" else []
    cli_main(["fit", *defaults, *rest], cli_class=TuneCLI)


if __name__ == "__main__":
    main()
