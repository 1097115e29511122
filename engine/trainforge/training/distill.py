"""Knowledge distillation: a student ImageClassifier trained on a frozen teacher's softened outputs.

loss = alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T)) + (1 - alpha) * CE(student, labels)
(Hinton et al. 2015; T^2 keeps the soft-target gradients on the scale of the hard-label ones).
"""

from __future__ import annotations

from typing import Any

import torch
from torch.nn import functional as F

from trainforge.checkpoints import load_model
from trainforge.models.classifier import ImageClassifier


class DistillClassifier(ImageClassifier):
    """An ImageClassifier (any backbone) that learns from `teacher` as well as from the labels.

    Args:
        teacher: Teacher checkpoint (`.ckpt`) or run directory (its best checkpoint); loaded frozen, in
            eval mode, only for training: the student's checkpoints and exports do not contain it.
        temperature: Softening temperature T of both distributions.
        alpha: Weight of the distillation term; `1 - alpha` weighs the cross-entropy on the labels.
    """

    def __init__(
        self, teacher: str = "", temperature: float = 4.0, alpha: float = 0.7, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        if not 0.0 <= alpha <= 1.0 or temperature <= 0:
            raise ValueError(
                f"DistillClassifier: need 0 <= alpha <= 1 and temperature > 0, got {alpha}, {temperature}"
            )
        self._teacher: list[torch.nn.Module] = []  # a list keeps it out of state_dict, optimizer and .train()

    def setup(self, stage: str) -> None:
        if stage == "fit" and not self._teacher:
            if not self.hparams.teacher:
                raise ValueError(
                    "DistillClassifier needs --model.init_args.teacher=<checkpoint or run directory>"
                )
            teacher, _ = load_model(self.hparams.teacher)
            teacher.requires_grad_(False)
            self._teacher.append(teacher.eval())

    def on_fit_start(self) -> None:
        self._teacher[0].to(self.device)

    def distillation_loss(
        self, logits: torch.Tensor, teacher_logits: torch.Tensor, y: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        t = self.hparams.temperature
        kd = F.kl_div(
            F.log_softmax(logits / t, -1),
            F.log_softmax(teacher_logits / t, -1),
            log_target=True,
            reduction="batchmean",
        )
        ce = self.loss_fn(logits, y)
        alpha = self.hparams.alpha
        return {"loss": alpha * t * t * kd + (1 - alpha) * ce, "kd": kd, "ce": ce}

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        with torch.no_grad():
            teacher_logits = self._teacher[0](x)
        losses = self.distillation_loss(logits, teacher_logits, y)
        self.update_train_metrics(logits, y)
        self.log(
            "train/loss", losses["loss"], on_step=True, on_epoch=True, prog_bar=self.device.type == "cpu"
        )
        self.log_dict(
            {"train/kd_loss": losses["kd"], "train/ce_loss": losses["ce"]}, on_step=False, on_epoch=True
        )
        self.log_dict(self.train_metrics, on_step=False, on_epoch=True)
        return losses["loss"]
