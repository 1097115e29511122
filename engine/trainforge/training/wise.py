"""Weight-space ensembling of the fine-tune with its start (WiSE-FT, Wortsman et al. 2022).

theta(a) = (1 - a) * theta_start + a * theta_end, with theta_start the model as training starts (after a
linear-probe head init: pretrained backbone + probe head) and theta_end the last epoch's weights. `a` is
chosen on the validation (selection) split from the given values; a = 0 is the probe model itself, so a
fine-tune that does not pay off on the selection split gives back what the probe knew. With BatchNorm
statistics frozen (`finetune.bn_eval`) both ends share them and the interpolation is exact; other
buffers are interpolated as well. Written here because no kept library offers it as a Lightning hook.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning as L
import torch

from trainforge.models.modes import evaluating


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone().cpu() for k, v in module.state_dict().items()}


def interpolate(
    start: dict[str, torch.Tensor], end: dict[str, torch.Tensor], a: float
) -> dict[str, torch.Tensor]:
    """Floating tensors blended; integer ones (BatchNorm's step counter) taken from `end`."""
    return {k: (start[k].to(v) * (1 - a) + v * a) if v.is_floating_point() else v for k, v in end.items()}


@torch.no_grad()
def selection_scores(trainer: L.Trainer, module: L.LightningModule) -> tuple[float, float]:
    """(score, mean loss) of `module` on the validation loader, summed over DDP ranks so that every rank
    picks the same `a`. The score is the task's training metric, higher better: accuracy, or -MAE."""
    task = module.task
    total = torch.zeros(3, dtype=torch.float64, device=module.device)  # metric sum, loss sum, samples
    with evaluating(module):
        for x, y in trainer.datamodule.val_dataloader():
            x, y = x.to(module.device), y.to(module.device)
            outputs = module(x)
            total += torch.tensor(
                [
                    float(task.train_values(outputs, y).sum()),
                    float(module.loss_fn(outputs, y)) * len(y),
                    len(y),
                ],
                dtype=torch.float64,
                device=module.device,
            )
    total = trainer.strategy.reduce(total, reduce_op="sum")
    metric, loss = float(total[0] / total[2]), float(total[1] / total[2])
    return (-metric if not task.classification else metric), loss


def choose(
    trainer: L.Trainer, module: L.LightningModule, start: dict[str, torch.Tensor], alphas: Sequence[float]
) -> dict[str, Any]:
    """Evaluate every `a` on the selection split, load the best into `module` (best metric, then lowest
    loss, then the larger `a`), and return the record summary.json keeps."""
    end = snapshot(module)
    scores = {}
    for a in alphas:
        module.load_state_dict(interpolate(start, end, float(a)))
        scores[float(a)] = selection_scores(trainer, module)
    chosen = max(scores, key=lambda a: (scores[a][0], -scores[a][1], a))
    module.load_state_dict(interpolate(start, end, chosen))
    return {
        "alpha": chosen,
        "selected_on": "val",
        "val": {str(a): {"score": round(m, 6), "loss": round(loss, 6)} for a, (m, loss) in scores.items()},
    }
