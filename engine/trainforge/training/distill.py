"""Knowledge distillation from a trained teacher run: a training component, config key `distill`.

loss = alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T)) + (1 - alpha) * task loss
(Hinton et al. 2015; T^2 keeps the soft-target gradients on the scale of the hard-label ones). The teacher
sees the batch the student sees (mixed, with mixup), and other components (L1) add to the total.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch.nn import functional as F

from trainforge.tasks import Multiclass
from trainforge.training.components import TrainingComponent, refuse


class Distillation(TrainingComponent):
    """Learn from `teacher`'s softened outputs as well as from the labels (multiclass tasks).

    Args:
        teacher: Teacher checkpoint (`.ckpt`) or run directory (its best checkpoint); loaded frozen, in eval
            mode, for training only: the student's checkpoints and exports do not contain it. None: off.
        temperature: Softening temperature T of both distributions.
        alpha: Weight of the distillation term; `1 - alpha` weighs the task loss on the labels.
    """

    key = "distill"

    def __init__(self, teacher: str | None = None, temperature: float = 4.0, alpha: float = 0.7) -> None:
        if not 0.0 <= alpha <= 1.0 or temperature <= 0:
            raise refuse(
                "distill",
                f"need 0 <= alpha <= 1 and temperature > 0, got alpha={alpha}, temperature={temperature}",
                "set distill.alpha in [0, 1] (the weight of the teacher's term) and distill.temperature > 0",
            )
        self.teacher_path = teacher
        self.temperature = temperature
        self.alpha = alpha
        self._teacher: list[torch.nn.Module] = []  # a list keeps it out of every state dict

    @property
    def active(self) -> bool:
        return bool(self.teacher_path)

    def check(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        from trainforge.checkpoints import load_model

        if not isinstance(module.task, Multiclass):
            raise refuse("distill", f"it matches softmax outputs, and this is a {module.task.kind} task",
                         "leave distill.teacher null")  # fmt: skip
        if self._teacher:
            return
        teacher, _ = load_model(self.teacher_path)
        if list(teacher.task.names) != list(module.task.names):
            raise refuse("distill.teacher", f"{self.teacher_path} was trained for classes {teacher.task.names[:5]}..., "
                         f"not this data's {module.task.names[:5]}...", "give a teacher run of the same classes")  # fmt: skip
        teacher.requires_grad_(False)
        self._teacher.append(teacher.eval())

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._teacher:
            self._teacher[0].to(pl_module.device)

    def adjust_loss(
        self,
        module: L.LightningModule,
        x: torch.Tensor,
        y: torch.Tensor,
        outputs: torch.Tensor,
        loss: torch.Tensor,
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        with torch.no_grad():
            teacher_logits = self._teacher[0](x)
        t = self.temperature
        kd = F.kl_div(
            F.log_softmax(outputs / t, -1),
            F.log_softmax(teacher_logits / t, -1),
            log_target=True,
            reduction="batchmean",
        )
        total = self.alpha * t * t * kd + (1 - self.alpha) * loss
        return total, {"kd_loss": kd.detach(), "ce_loss": loss.detach()}
