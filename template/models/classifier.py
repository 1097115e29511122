"""The image classifier. Subclass it (or edit the hooks) to change the backbone, head, loss or metrics.

Everything else (optimizer groups, schedules, logging, checkpoint contents) is the template's.
"""

from __future__ import annotations

from typing import Any, Literal

import lightning as L
import timm
import torch
from timm.optim import param_groups_weight_decay
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from template.training.mixing import MixupLoss
from template.training.optim import (
    build_optimizer,
    build_schedule,
    build_warmup,
    epochs_to_steps,
    scheduler_config,
)
from template.training.regularization import (
    class_weight_tensor,
    fill_balanced_weights,
    l1_penalty,
    select_parameters,
)


class ImageClassifier(L.LightningModule):
    """A timm backbone with a linear head, trained with cross-entropy.

    Args:
        num_classes: Number of classes; linked from the DataModule, so rarely set by hand.
        in_chans: Input channels; linked from the DataModule.
        backbone: Any `timm.list_models()` name.
        backbone_kwargs: Extra `timm.create_model` arguments (e.g. `drop_path_rate`).
        drop_rate: Dropout before the classifier.
        label_smoothing: Cross-entropy label smoothing.
        optimizer: `sgd`, `adamw`, `adam`, `rmsprop` or any `torch.optim` class name.
        lr: Peak learning rate.
        weight_decay: Decoupled weight decay; never applied to norm layers and biases.
        optimizer_kwargs: Extra optimizer arguments (e.g. `{momentum: 0.9, nesterov: true}`).
        scheduler: `cosine` or `constant`, stepped per optimizer step.
        warmup_epochs: Linear warmup length in epochs (fractions allowed).
        min_lr_ratio: Final learning rate of the cosine schedule as a fraction of `lr`.
        scheduler_kwargs: The schedule's own settings, lengths in epochs (template/training/optim.py):
            sgdr `{T_0: 2, T_mult: 2, peak_decay: 0.5}`, step `{step_epochs: 3, gamma: 0.1}`, multistep
            `{milestones: [5, 8]}`, onecycle (OneCycleLR args), plateau `{monitor: val/loss, patience: 2}`.
            Schedules: `cosine`, `constant`, `sgdr`, `onecycle`, `step`, `multistep`, `plateau`.
        l1: L1 penalty `{weight: 1e-4, params: ["head.*"]}` (glob patterns of parameter names).
        mixup: timm Mixup/CutMix arguments (e.g. `{mixup_alpha: 0.2, cutmix_alpha: 1.0}`); training
            batches only, with a soft-target loss; label smoothing goes into the soft targets.
        class_weights: Cross-entropy class weights: a list, or "balanced" (n / (k * n_c) from the train split).
        channels_last: NHWC memory format for the model and inputs (faster convolutions on GPUs).
        compile: `torch.compile` the backbone: true, or a dict of torch.compile arguments.
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_chans: int = 3,
        backbone: str = "resnet18",
        backbone_kwargs: dict[str, Any] | None = None,
        drop_rate: float = 0.0,
        label_smoothing: float = 0.0,
        optimizer: str = "adamw",
        lr: float = 1e-3,
        weight_decay: float = 0.05,
        optimizer_kwargs: dict[str, Any] | None = None,
        scheduler: str = "cosine",
        warmup_epochs: float = 0.0,
        min_lr_ratio: float = 0.0,
        scheduler_kwargs: dict[str, Any] | None = None,
        l1: dict[str, Any] | None = None,
        mixup: dict[str, Any] | None = None,
        class_weights: list[float] | Literal["balanced"] | None = None,
        channels_last: bool = False,
        compile: bool | dict[str, Any] = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.num_classes = num_classes
        self.backbone = self.build_backbone()
        self.head = self.build_head(self.backbone.num_features)
        self.loss_fn = self.build_loss()
        metrics = self.build_metrics()
        self.train_metrics = metrics.clone(prefix="train/")
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")
        self.mixup = MixupLoss(num_classes, label_smoothing, mixup) if mixup is not None else None
        self._l1_params = select_parameters(self, l1.get("params", ["*"]), "model.l1.params") if l1 else []
        if channels_last:
            self.to(memory_format=torch.channels_last)
        if compile:
            self.backbone.compile(**(compile if isinstance(compile, dict) else {}))

    # ----------------------------------------------------------------- user hooks
    def build_backbone(self) -> nn.Module:
        """Return a feature extractor with a `num_features` attribute; its output is pooled features."""
        kwargs = self.hparams.backbone_kwargs or {}
        return timm.create_model(
            self.hparams.backbone, pretrained=False, num_classes=0, in_chans=self.hparams.in_chans, **kwargs
        )

    def build_head(self, num_features: int) -> nn.Module:
        """Return the classifier that maps pooled features to `num_classes` logits."""
        return nn.Sequential(nn.Dropout(self.hparams.drop_rate), nn.Linear(num_features, self.num_classes))

    def build_loss(self) -> nn.Module:
        weight = class_weight_tensor(self.hparams.class_weights, self.num_classes)
        return nn.CrossEntropyLoss(weight=weight, label_smoothing=self.hparams.label_smoothing)

    def build_metrics(self) -> MetricCollection:
        # validate_args=False: the input checks wait for the GPU at every step; the loss rejects bad labels.
        return MetricCollection(
            {
                "acc": MulticlassAccuracy(self.num_classes, average="micro", validate_args=False),
                "f1": MulticlassF1Score(self.num_classes, average="macro", validate_args=False),
            }
        )

    # ---------------------------------------------------------------- the wiring
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.hparams.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.head(self.backbone(x))

    def _shared_step(self, batch: Any, stage: str, metrics: MetricCollection) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        loss = self.loss_fn(logits, y)
        metrics.update(logits.detach(), y)
        on_step = stage == "train"
        self.log(f"{stage}/loss", loss, on_step=on_step, on_epoch=True, prog_bar=True, sync_dist=not on_step)
        self.log_dict(metrics, on_step=False, on_epoch=True, prog_bar=stage != "train")
        return loss

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        if self.mixup is not None:
            loss = self._mixed_step(batch)
        else:
            loss = self._shared_step(batch, "train", self.train_metrics)
        if self._l1_params:
            penalty = l1_penalty(self._l1_params, float(self.hparams.l1.get("weight", 1e-4)))
            self.log("train/l1", penalty, on_step=True, on_epoch=True)
            loss = loss + penalty
        return loss

    def _mixed_step(self, batch: Any) -> torch.Tensor:
        """Mixup/CutMix on the batch; train metrics are not logged (mixed inputs have no single label)."""
        assert self.mixup is not None
        x, soft = self.mixup.mix(*batch)
        loss = self.mixup(self(x), soft)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True)
        return loss

    def setup(self, stage: str) -> None:
        if stage == "fit" and self.hparams.class_weights == "balanced":
            fill_balanced_weights(self.loss_fn, self.trainer.datamodule, self.num_classes)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._shared_step(batch, "val", self.val_metrics)

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._shared_step(batch, "test", self.test_metrics)

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> dict[str, torch.Tensor]:
        x = batch[0] if isinstance(batch, (list, tuple)) else batch
        probs = self(x).softmax(dim=-1)
        return {"probs": probs, "preds": probs.argmax(dim=-1)}

    def param_groups(self) -> list[dict[str, Any]]:
        """Parameter groups for the optimizer: no weight decay on norms and biases (timm's helper)."""
        return param_groups_weight_decay(self, self.hparams.weight_decay)

    def configure_optimizers(self) -> Any:
        hp = self.hparams
        optimizer = build_optimizer(self.param_groups(), hp.optimizer, hp.lr, **(hp.optimizer_kwargs or {}))
        total = int(self.trainer.estimated_stepping_batches)
        steps_per_epoch = total / max(1, self.trainer.max_epochs or 1)
        warmup = epochs_to_steps(hp.warmup_epochs, steps_per_epoch)
        options = dict(hp.scheduler_kwargs or {})
        monitor = options.get("monitor")
        schedule = build_schedule(optimizer, hp.scheduler, total, warmup, hp.min_lr_ratio, steps_per_epoch, **options)
        if hp.scheduler == "plateau" and warmup > 0:
            # Plateau steps per epoch on a metric; its warmup is a second, per-step scheduler.
            warm = scheduler_config(build_warmup(optimizer, warmup))
            return [optimizer], [warm, scheduler_config(schedule, monitor)]
        return {"optimizer": optimizer, "lr_scheduler": scheduler_config(schedule, monitor)}
