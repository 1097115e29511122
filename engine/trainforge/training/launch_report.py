"""What the job really has, said once at fit start (rank 0) and recorded in summary.json.

A batch log must answer "how many processes, on what, with which batch and learning rate" without the
reader reconstructing it from the launcher's flags: a scheduler's banner only repeats what was asked for.
"""

from __future__ import annotations

import math
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info


def launch_fields(trainer: Trainer) -> dict[str, Any]:
    """Accelerator, devices per node, nodes, world size: what the processes of this fit run on."""
    return {
        "accelerator": trainer.strategy.root_device.type,  # cpu, cuda, mps: the device the model is on
        "devices_per_node": trainer.num_devices,
        "nodes": trainer.num_nodes,
        "world_size": trainer.world_size,
        "strategy": type(trainer.strategy).__name__,
    }


def peak_lr(trainer: Trainer) -> float | None:
    """The learning rate the optimizer steps with at the schedule's peak (`initial_lr`: what schedulers
    scale from; warm-up has already lowered `lr` when fit starts)."""
    groups = [g for opt in trainer.optimizers for g in opt.param_groups]
    rates = [float(g.get("initial_lr", g["lr"])) for g in groups]
    return max(rates) if rates else None


class LaunchReport(Callback):
    """Prints the launch line at fit start and gives summary.json its `launch`, `batch` and `lr` fields."""

    def __init__(self) -> None:
        self.fields: dict[str, Any] = {}

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        launch = launch_fields(trainer)
        plan = getattr(trainer.datamodule, "batch_plan", None)
        batch = plan().fields() if callable(plan) else None
        total = trainer.estimated_stepping_batches  # builds the train loader if nothing did yet
        per_epoch = trainer.num_training_batches
        self.fields = {
            "launch": launch,
            "batch": batch,
            "lr": {
                "peak": peak_lr(trainer),
                "rule": "as configured: data.batch_size is the global batch, so no scaling with world size",
                "optimizer_steps": int(total) if math.isfinite(total) else None,
                "steps_per_epoch": math.ceil(per_epoch / trainer.accumulate_grad_batches)
                if math.isfinite(per_epoch)
                else None,
            },
        }
        rank_zero_info(self.line())

    def line(self) -> str:
        launch, batch, lr = self.fields["launch"], self.fields["batch"], self.fields["lr"]
        text = (
            f"launch: {launch['accelerator'].upper()}, {launch['devices_per_node']} device(s) per node x "
            f"{launch['nodes']} node(s) = world size {launch['world_size']} ({launch['strategy']})"
        )
        if batch is not None:
            text += (
                f"; batch {batch['global_batch']} global = {batch['per_device']} per device x "
                f"{batch['world_size']} rank(s) x {batch['accumulation']} accumulation step(s)"
            )
        if lr["peak"] is not None:
            text += f"; peak lr {lr['peak']:g}, {lr['optimizer_steps']} optimizer steps"
        return text

    def summary_fields(self) -> dict[str, Any]:
        return dict(self.fields)
