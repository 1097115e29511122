"""The image classifier. Subclass it (or edit the hooks) to change the backbone, head, loss or metrics.

Everything else (optimizer groups, schedules, logging, checkpoint contents) is the template's.
"""

from __future__ import annotations

from typing import Any, Literal

import lightning as L
import torch
from timm.data import resolve_data_config
from timm.optim import param_groups_weight_decay
from torch import nn
from torchmetrics import MeanMetric, MetricCollection

from trainforge.embeddings import EmbeddingWriter
from trainforge.errors import incompatible_checkpoint
from trainforge.models import heads
from trainforge.models.backbone import WeightsError, check_head_compatible, create_backbone
from trainforge.training.finetuning import FreezeUnfreeze, has_freezing
from trainforge.training.linear_probe import init_head_by_linear_probe
from trainforge.training.lr_groups import finetune_param_groups
from trainforge.training.mixing import MixupLoss
from trainforge.training.optim import (
    build_optimizer,
    build_schedule,
    build_warmup,
    epochs_to_steps,
    scheduler_config,
)
from trainforge.training.regularization import (
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
        weights: Pretrained backbone weights: a `.safetensors`/`.pth` file with timm key names, an earlier
            run's `.ckpt` (backbone part only), or `hub` / `<name>.<tag>` to download (online only).
        strict_weights: Refuse a partial load (missing or unexpected keys); false loads what matches.
        head_hidden: Width of an optional hidden layer (GELU, dropout) in the head.
        head_outputs: Number of outputs when wider than `num_classes` (default: `num_classes`).
        multilabel: Sigmoid + binary cross-entropy, multi-label metrics; targets are multi-hot vectors.
        bias_from_priors: Initialise the output bias from the training class frequencies.
        freeze_backbone: Train the head only (feature extraction); frozen BatchNorm stays in eval mode.
        freeze_stages: Never train the first N backbone stages (the stem counts as the first).
        unfreeze_at_epoch: Train the head only before this epoch, then unfreeze (all, or stage by stage).
        unfreeze_stage_every: With `unfreeze_at_epoch`: one more stage from the top every N epochs (0: all).
        backbone_lr_mult: Backbone learning rate as a fraction of `lr` (the head's).
        layer_decay: Layer-wise decay of the backbone learning rate (e.g. 0.75), nearest the head highest.
        head_init: `default`, or `linear_probe`: before the first epoch of a fresh fit, fit the head as a
            logistic regression on the frozen backbone's features of the training images (LP-FT).
        bn_eval: Keep every BatchNorm of the backbone in eval mode (statistics frozen, affine trained).
        bn_adapt_epochs: With `bn_eval`: the trainable layers' BatchNorm statistics first adapt to the new
            data (train mode) for this many epochs, then freeze.
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
        weights: str | None = None,
        strict_weights: bool = True,
        head_hidden: int | None = None,
        head_outputs: int | None = None,
        multilabel: bool = False,
        bias_from_priors: bool = False,
        freeze_backbone: bool = False,
        freeze_stages: int = 0,
        unfreeze_at_epoch: int | None = None,
        unfreeze_stage_every: int = 0,
        backbone_lr_mult: float = 1.0,
        layer_decay: float | None = None,
        head_init: str = "default",
        bn_eval: bool = False,
        bn_adapt_epochs: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.num_classes = num_classes
        self.backbone = self.build_backbone()
        self.head = self.build_head(self.backbone.num_features)
        self.loss_fn = self.build_loss()
        metrics = self.build_metrics()
        # Training accuracy as a running mean of hits: torchmetrics' stat-score update (bincount) and a
        # per-step value on the progress bar each make the CPU wait for the GPU at every step.
        self.train_metrics = MetricCollection({"acc": MeanMetric(nan_strategy="disable")}, prefix="train/")
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
        hp = self.hparams
        return create_backbone(hp.backbone, hp.in_chans, hp.weights, hp.strict_weights, **kwargs)

    def build_head(self, num_features: int) -> nn.Module:
        """Return the classifier that maps pooled features to `num_classes` logits."""
        hp = self.hparams
        return heads.build_head(
            num_features, hp.head_outputs or self.num_classes, hp.head_hidden, hp.drop_rate
        )

    def build_loss(self) -> nn.Module:
        weight = class_weight_tensor(self.hparams.class_weights, self.num_classes)
        return heads.build_loss(self.hparams.multilabel, self.hparams.label_smoothing, weight)

    def build_metrics(self) -> MetricCollection:
        return heads.build_metrics(self.hparams.head_outputs or self.num_classes, self.hparams.multilabel)

    # ---------------------------------------------------------------- the wiring
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.hparams.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.head(self.backbone(x))

    def _shared_step(self, batch: Any, stage: str, metrics: MetricCollection) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        loss = self.loss_fn(logits, y)
        if stage == "train":
            self.update_train_metrics(logits, y)
            self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=self.device.type == "cpu")
            self.log_dict(metrics, on_step=False, on_epoch=True)
            return loss
        metrics.update(logits.detach(), y.long() if self.hparams.multilabel else y)
        self.log(f"{stage}/loss", loss, on_epoch=True, prog_bar=True, sync_dist=True)
        self.log_dict(metrics, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def update_train_metrics(self, logits: torch.Tensor, y: torch.Tensor) -> None:
        """`train/acc`: the share of correct predictions (each label at 0.5 in multi-label mode)."""
        logits = logits.detach()
        if self.hparams.multilabel:
            hits = ((logits > 0) == y.bool()).float().mean(dim=-1)
        else:
            hits = (logits.argmax(dim=-1) == y).float()
        self.train_metrics["acc"].update(hits)

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
        # Before a resumed checkpoint is restored, so a resume keeps its trained bias.
        if stage == "fit" and self.hparams.bias_from_priors:
            heads.init_bias_from_priors(
                self.head[-1], heads.class_priors(self.trainer.datamodule), self.hparams.multilabel
            )

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._shared_step(batch, "val", self.val_metrics)

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._shared_step(batch, "test", self.test_metrics)

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> dict[str, torch.Tensor]:
        x = batch[0] if isinstance(batch, (list, tuple)) else batch
        features = self.backbone(x)
        logits = self.head(features)
        probs = logits.sigmoid() if self.hparams.multilabel else logits.softmax(dim=-1)
        # Pooled features too: EmbeddingWriter saves them when the DataModule asks (predict_embeddings).
        return {"probs": probs, "preds": probs.argmax(dim=-1), "embeddings": features}

    def param_groups(self) -> list[dict[str, Any]]:
        """Parameter groups for the optimizer: no weight decay on norms and biases (timm's helper)."""
        hp = self.hparams
        if hp.backbone_lr_mult != 1.0 or hp.layer_decay is not None or self._freezing():
            return finetune_param_groups(
                self.backbone, self.head, hp.lr, hp.weight_decay, hp.backbone_lr_mult, hp.layer_decay, self
            )
        return param_groups_weight_decay(self, self.hparams.weight_decay)

    def configure_optimizers(self) -> Any:
        hp = self.hparams
        optimizer = build_optimizer(self.param_groups(), hp.optimizer, hp.lr, **(hp.optimizer_kwargs or {}))
        total = int(self.trainer.estimated_stepping_batches)
        steps_per_epoch = total / max(1, self.trainer.max_epochs or 1)
        warmup = epochs_to_steps(hp.warmup_epochs, steps_per_epoch)
        options = dict(hp.scheduler_kwargs or {})
        monitor = options.get("monitor")
        schedule = build_schedule(
            optimizer, hp.scheduler, total, warmup, hp.min_lr_ratio, steps_per_epoch, **options
        )
        if hp.scheduler == "plateau" and warmup > 0:
            # Plateau steps per epoch on a metric; its warmup is a second, per-step scheduler.
            warm = scheduler_config(build_warmup(optimizer, warmup))
            return [optimizer], [warm, scheduler_config(schedule, monitor)]
        return {"optimizer": optimizer, "lr_scheduler": scheduler_config(schedule, monitor)}

    # ------------------------------------------------------------ transfer learning
    @property
    def data_config(self) -> dict[str, Any]:
        """Input size, interpolation, crop and normalisation of the backbone's pretrained config (timm)."""
        return resolve_data_config(model=self.backbone)

    def _stage_options(self) -> tuple[bool, int, int | None, int]:
        hp = self.hparams
        return hp.freeze_backbone, hp.freeze_stages, hp.unfreeze_at_epoch, hp.unfreeze_stage_every

    def _freezing(self) -> bool:
        return has_freezing(*self._stage_options()) or bool(self.hparams.get("bn_eval"))

    def configure_callbacks(self) -> list[L.Callback]:
        hp = self.hparams
        callbacks: list[L.Callback] = []
        if self._freezing():
            callbacks.append(FreezeUnfreeze(*self._stage_options(), hp.bn_eval, hp.get("bn_adapt_epochs", 0)))
        callbacks.append(EmbeddingWriter())  # writes only when the DataModule's predict_embeddings is set
        return callbacks

    def on_fit_start(self) -> None:
        # A fresh fit only: a resumed one already has its trained head.
        if self.hparams.head_init == "linear_probe" and self.trainer.ckpt_path is None:
            init_head_by_linear_probe(self, self.trainer.datamodule)
        elif self.hparams.head_init not in ("default", "linear_probe"):
            raise ValueError(
                f"model.head_init: '{self.hparams.head_init}' is not one of default, linear_probe"
            )

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        try:
            check_head_compatible(checkpoint, self)
        except WeightsError as error:
            path = self._trainer.ckpt_path if self._trainer is not None else None
            if path is None:
                raise
            raise incompatible_checkpoint(path, str(error).rstrip(".")) from error
