"""Weight-space ensembling of the fine-tune with its start (WiSE-FT, Wortsman et al. 2022).

theta(a) = (1 - a) * theta_start + a * theta_end, with theta_start the model as training starts (after a
linear-probe head init: pretrained backbone + probe head) and theta_end the last epoch's weights. `a` is
chosen on the validation (selection) split from the given values; a = 0 is the probe model itself, so a
fine-tune that does not pay off on the selection split gives back what the probe knew. With `evidence_p`
one candidate is kept (the fine-tune, the largest `a`, or with `keep="probe"` the probe) and another `a` must
beat it by a paired sign test, not by one or two samples of a small split. With BatchNorm statistics frozen (`finetune.bn_eval`) both ends share
them and the interpolation is exact; other buffers are interpolated as well. Written here because no kept library offers it as a Lightning hook.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import lightning as L
import torch

from trainforge.training.modes import evaluating


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone().cpu() for k, v in module.state_dict().items()}


def interpolate(
    start: dict[str, torch.Tensor], end: dict[str, torch.Tensor], a: float
) -> dict[str, torch.Tensor]:
    """Floating tensors blended; integer ones (BatchNorm's step counter) taken from `end`."""
    return {k: (start[k].to(v) * (1 - a) + v * a) if v.is_floating_point() else v for k, v in end.items()}


@torch.no_grad()
def selection_scores(
    trainer: L.Trainer, module: L.LightningModule, split: str = "val"
) -> tuple[float, float, torch.Tensor]:
    """(score, mean loss, per-sample values) of `module` on the validation loader. Score and loss are summed
    over DDP ranks so that every rank picks the same `a`; the values (this rank's samples, in loader order,
    higher better) pair candidates sample by sample. The score is the task's training metric: accuracy,
    or -MAE. `split="test"`: the same on the reported split (the study's audit only, never to choose)."""
    task = module.task
    sign = 1.0 if task.classification else -1.0
    total = torch.zeros(3, dtype=torch.float64, device=module.device)  # metric sum, loss sum, samples
    values = []
    with evaluating(module):
        for x, y in getattr(trainer.datamodule, f"{split}_dataloader")():
            x, y = x.to(module.device), y.to(module.device)
            outputs = module(x)
            per_sample = task.train_values(outputs, y).double()
            values.append(sign * per_sample.reshape(-1))
            total += torch.tensor(
                [float(per_sample.sum()), float(module.loss_fn(outputs, y)) * len(y), len(y)],
                dtype=torch.float64,
                device=module.device,
            )
    total = trainer.strategy.reduce(total, reduce_op="sum")
    metric, loss = float(total[0] / total[2]), float(total[1] / total[2])
    return sign * metric, loss, torch.cat(values)


def sign_test_p(wins: int, losses: int) -> float:
    """One-sided exact sign test (McNemar's exact test for paired right/wrong): the chance of at least
    `wins` of `wins + losses` untied pairs under "neither is better"."""
    n = wins + losses
    return sum(math.comb(n, k) for k in range(wins, n + 1)) / 2**n if n else 1.0


def choose(
    trainer: L.Trainer,
    module: L.LightningModule,
    start: dict[str, torch.Tensor],
    alphas: Sequence[float],
    evidence_p: float = 1.0,
    keep: str = "finetune",
) -> dict[str, Any]:
    """Evaluate every `a` on the selection split, load the chosen one into `module`, and return the record
    summary.json keeps.

    The best `a` (metric, then lowest loss, then the larger `a`) is chosen, except that with `evidence_p`
    below 1 the kept candidate stays unless the best beats it sample by sample with a one-sided sign test
    p < `evidence_p`: a small selection split cannot tell one or two samples from noise. `keep="finetune"`
    keeps the largest `a` (the probe's C was picked on that same split, so its score there is optimistic);
    `keep="probe"` keeps the smallest (the start: the probe), so a fine-tune is reported only when the
    split shows it ahead, the safe fallback where a fine-tune may lose to its probe."""
    end = snapshot(module)
    scores, values = {}, {}
    for a in alphas:
        module.load_state_dict(interpolate(start, end, float(a)))
        score, loss, values[float(a)] = selection_scores(trainer, module)
        scores[float(a)] = (score, loss)

    def paired(a: float, b: float) -> tuple[int, int]:
        counts = torch.tensor(
            [float((values[a] > values[b]).sum()), float((values[a] < values[b]).sum())],
            dtype=torch.float64,
            device=module.device,
        )
        wins, losses = (int(v) for v in trainer.strategy.reduce(counts, reduce_op="sum").tolist())
        return wins, losses

    chosen, record = decide(scores, paired, evidence_p, keep)
    module.load_state_dict(interpolate(start, end, chosen))
    return {
        "alpha": chosen,
        "selected_on": "val",
        "val": {str(a): {"score": round(m, 6), "loss": round(loss, 6)} for a, (m, loss) in scores.items()},
        **record,
    }


def decide(
    scores: dict[float, tuple[float, float]],
    paired: Callable[[float, float], tuple[int, int]],
    evidence_p: float = 1.0,
    keep: str = "finetune",
) -> tuple[float, dict[str, Any]]:
    """The rule of `choose` on given figures: `scores` maps each `a` to (selection score, loss) and
    `paired(a, b)` gives a's wins and losses against b sample by sample. The recipe study replays it on a
    run's recorded candidates (`audit`), so a selection rule is measured without training again."""
    best = max(scores, key=lambda a: (scores[a][0], -scores[a][1], a))
    default = max(scores) if keep == "finetune" else min(scores)
    if evidence_p >= 1.0 or best == default:
        return best, {}
    wins, losses = paired(best, default)
    p = sign_test_p(wins, losses)
    record = {"test": {"a": best, "against": default, "wins": wins, "losses": losses, "p": round(p, 6)}}
    return (best if p < evidence_p else default), record


def audit(
    trainer: L.Trainer,
    module: L.LightningModule,
    start: dict[str, torch.Tensor],
    alphas: Sequence[float],
) -> dict[str, Any]:
    """Every `a`'s per-sample values on the selection split and its score on the reported split, for the
    recipe study to replay selection rules offline (recipe_rules.py). It touches the reported split of
    every candidate, so it is a study's record, never part of a choice; the weights end as they began."""
    end = snapshot(module)
    record = {}
    for a in alphas:
        module.load_state_dict(interpolate(start, end, float(a)))
        score, loss, values = selection_scores(trainer, module)
        reported, reported_loss, _ = selection_scores(trainer, module, "test")
        record[str(float(a))] = {
            "val_score": round(score, 6),
            "val_loss": round(loss, 6),
            "val_values": [round(float(v), 6) for v in values.tolist()],
            "reported": round(reported, 6),
            "reported_loss": round(reported_loss, 6),
        }
    module.load_state_dict(end)
    return record
