"""The model: a backbone and a head for the data's task. Subclass it and fill in the hooks.

Hooks (all optional): `build_backbone` (default: a timm model by name), `build_head`, `build_loss`,
`build_metrics`, `predict_step`. They run in `configure_model`, after your `__init__` has finished, so they
can read any attribute you set there. Everything else is the engine's: optimizer groups, schedules,
the task's loss and metrics, checkpoint contents, and the features (freezing, EMA, mixup...) chosen by
config, which are callbacks and training components (training/components.py), not branches here.

A backbone is any `nn.Module` mapping a batch to pooled features `(N, num_features)` with a
`num_features` attribute. Two optional parts of timm's interface switch on more features: `group_matcher`
(stages: freeze_stages, unfreeze_stage_every, layer_decay) and `pretrained_cfg` (the input size and
normalisation that image DataModules follow with `image_size: null`); a feature that needs a missing part
refuses at start-up, naming it.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any, Literal

import lightning as L
import torch
from timm.data import resolve_data_config
from torch import nn
from torchmetrics import MeanMetric, MetricCollection

from trainforge.errors import ConfigError, incompatible_checkpoint
from trainforge.models import heads
from trainforge.models.backbone import (
    WeightsError,
    check_head_compatible,
    create_backbone,
    load_backbone_weights,
)
from trainforge.tasks import Task, task_from_config
from trainforge.training.components import active_components
from trainforge.training.lr_groups import finetune_param_groups
from trainforge.training.optim import optimizer_and_schedule
from trainforge.training.regularization import balanced_weights, class_weight_tensor

# Set while a checkpoint is being loaded: its state replaces the pretrained weights, so the (possibly
# moved or deleted) pretrained file is not read at all.
_RESTORING: ContextVar[bool] = ContextVar("trainforge_restoring", default=False)


class Model(L.LightningModule):
    """A backbone (timm by name, or your hook's module) and a head, trained for the data's task.

    Args:
        task: The data's task (linked from the DataModule by the CLI; its config dict in checkpoints).
        num_classes: Only without a task (a model used on its own): a multiclass task of this many classes.
        in_chans: Input channels (linked from the DataModule).
        input_shape: Shape of one input, when the DataModule declares it (tabular: `[features]`).
        backbone: A `timm.list_models()` name, for the default `build_backbone`.
        backbone_kwargs: Extra `timm.create_model` arguments (e.g. `drop_path_rate`).
        weights: Pretrained backbone weights: a `.safetensors`/`.pth` file (timm key names, or your module's
            for your own backbone), an earlier run's `.ckpt` (backbone part), or `hub` / `<name>.<tag>`
            (timm backbones, online). Read once, at the start of a fresh fit; checkpoints carry the result.
        strict_weights: Refuse a partial load (missing or unexpected keys); false loads what matches.
        head_hidden: Width of an optional hidden layer (GELU, dropout) in the head.
        head_outputs: Outputs of the head when wider than the task's (rarely needed).
        drop_rate: Dropout before the head's last layer.
        bias_from_priors: Start the output bias at the training class frequencies (classification).
        label_smoothing: Cross-entropy label smoothing (multiclass).
        class_weights: Loss class weights: a list, or "balanced" (n / (k * n_c) from the train split).
        optimizer: `sgd`, `adamw`, `adam`, `rmsprop` or any `torch.optim` class name.
        lr: Peak learning rate (the head's, with `backbone_lr_mult`).
        weight_decay: Decoupled weight decay; never applied to norm layers and biases.
        optimizer_kwargs: Extra optimizer arguments (e.g. `{momentum: 0.9, nesterov: true}`).
        scheduler: `cosine`, `constant`, `sgdr`, `onecycle`, `step`, `multistep` or `plateau`, per step.
        warmup_epochs: Linear warmup length in epochs (fractions allowed).
        min_lr_ratio: Final learning rate of the cosine schedule as a fraction of `lr`.
        scheduler_kwargs: The schedule's own settings, lengths in epochs (training/optim.py).
        backbone_lr_mult: Backbone learning rate as a fraction of `lr`.
        layer_decay: Layer-wise decay of the backbone learning rate (needs the backbone's stages).
        channels_last: NHWC memory format for the model and inputs (faster convolutions on GPUs).
        compile: `torch.compile` the backbone: true, or a dict of torch.compile arguments.
    """

    def __init__(
        self,
        task: Task | dict[str, Any] | None = None,
        num_classes: int | None = None,
        in_chans: int = 3,
        input_shape: list[int] | None = None,
        backbone: str = "resnet18",
        backbone_kwargs: dict[str, Any] | None = None,
        weights: str | None = None,
        strict_weights: bool = True,
        head_hidden: int | None = None,
        head_outputs: int | None = None,
        drop_rate: float = 0.0,
        bias_from_priors: bool = False,
        label_smoothing: float = 0.0,
        class_weights: list[float] | Literal["balanced"] | None = None,
        optimizer: str = "adamw",
        lr: float = 1e-3,
        weight_decay: float = 0.05,
        optimizer_kwargs: dict[str, Any] | None = None,
        scheduler: str = "cosine",
        warmup_epochs: float = 0.0,
        min_lr_ratio: float = 0.0,
        scheduler_kwargs: dict[str, Any] | None = None,
        backbone_lr_mult: float = 1.0,
        layer_decay: float | None = None,
        channels_last: bool = False,
        compile: bool | dict[str, Any] = False,
    ) -> None:
        super().__init__()
        self.task = task_from_config(task, num_classes)
        self.save_hyperparameters(ignore=["task", "num_classes"])
        # The task as a plain dict (checkpoints load without pickled classes), in the logged hparams too.
        self.save_hyperparameters({**self.hparams, "task": self.task.to_config()})
        self.backbone: nn.Module | None = None  # built by configure_model, after the subclass's __init__

    @property
    def num_classes(self) -> int:
        """Classes (labels, targets) of the task; the head has `task.num_outputs` outputs."""
        return len(self.task.names)

    # ----------------------------------------------------------------- user hooks
    def build_backbone(self) -> nn.Module:
        """Return a module mapping inputs to pooled features, with a `num_features` attribute."""
        hp = self.hparams
        weights = self._weights_to_load()
        return create_backbone(
            hp.backbone, hp.in_chans, weights, hp.strict_weights, **(hp.backbone_kwargs or {})
        )

    def build_head(self, num_features: int) -> nn.Module:
        """Return the module mapping pooled features to the task's outputs; its last layer is `[-1]`."""
        hp = self.hparams
        return heads.build_head(
            num_features, hp.head_outputs or self.task.num_outputs, hp.head_hidden, hp.drop_rate
        )

    def build_loss(self) -> nn.Module:
        weight = class_weight_tensor(self.hparams.class_weights, len(self.task.names))
        return self.task.build_loss(self.hparams.label_smoothing, weight)

    def build_metrics(self) -> MetricCollection:
        """Metrics of validation and test, logged as `val/<name>`, `test/<name>`."""
        return self.task.build_metrics()

    # ---------------------------------------------------------------- building
    def configure_model(self) -> None:
        """Build the modules once (Lightning calls this in every run and in `load_from_checkpoint`)."""
        if self.backbone is not None:
            return
        backbone = self.build_backbone()
        num_features = getattr(backbone, "num_features", None)
        if not isinstance(num_features, int):
            raise ConfigError(
                f"{type(self).__name__}.build_backbone returned a {type(backbone).__name__} without an integer "
                "`num_features`: set `backbone.num_features = <width of its pooled output>` (e.g. 512 for "
                "torchvision's resnet18 with `fc = nn.Identity()`)"
            )
        if type(self).build_backbone is not Model.build_backbone and (weights := self._weights_to_load()):
            load_backbone_weights(backbone, weights, strict=self.hparams.strict_weights)
        self.backbone = backbone
        self.head = self.build_head(num_features)
        self.loss_fn = self.build_loss()
        metrics = self.build_metrics()
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")
        # A running mean of per-sample values: torchmetrics' stat-score update (bincount) and a per-step
        # value on the progress bar each make the CPU wait for the GPU at every step.
        self.train_metrics = MetricCollection(
            {self.task.train_metric: MeanMetric(nan_strategy="disable")}, prefix="train/"
        )
        if self.hparams.channels_last:
            self.to(memory_format=torch.channels_last)
        if self.hparams.compile:
            compile_args = self.hparams.compile
            self.backbone.compile(**(compile_args if isinstance(compile_args, dict) else {}))

    # Set by whoever knows a checkpoint will be restored into this model (the CLI; Lightning sets
    # `trainer.ckpt_path` only after the setup hooks, where the modules are built).
    restoring: bool = False

    def _weights_to_load(self) -> str | None:
        """The pretrained file to read now: only when no checkpoint is about to replace the weights."""
        weights = self.hparams.weights
        trainer = self._trainer
        if not weights or self.restoring or _RESTORING.get() or (trainer is not None and trainer.ckpt_path):
            return None
        return weights

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path: Any, *args: Any, **kwargs: Any) -> Model:  # type: ignore[override]
        token = _RESTORING.set(True)
        try:
            return super().load_from_checkpoint(checkpoint_path, *args, **kwargs)
        finally:
            _RESTORING.reset(token)

    @property
    def data_config(self) -> dict[str, Any] | None:
        """The backbone's pretrained input size, interpolation, crop and normalisation (timm), if it has them."""
        self.configure_model()
        if not getattr(self.backbone, "pretrained_cfg", None):
            return None
        return resolve_data_config(model=self.backbone)

    # ---------------------------------------------------------------- steps
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.hparams.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.head(self.backbone(x))

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch[0], batch[1]
        components = active_components(self.trainer)
        for component in components:
            x, y = component.transform_batch(self, x, y)
        outputs = self(x)
        loss = self.loss_fn(outputs, y)
        terms: dict[str, torch.Tensor] = {}
        for component in components:
            loss, extra = component.adjust_loss(self, x, y, outputs, loss)
            terms.update(extra)
        # sync_dist: under DDP the epoch value is the mean over all ranks, not rank 0's (one scalar all-reduce
        # per step, negligible beside the gradients' own).
        self.log(
            "train/loss",
            loss,
            on_step=True,
            on_epoch=True,
            prog_bar=self.device.type == "cpu",
            sync_dist=True,
        )
        if terms:
            self.log_dict(
                {f"train/{k}": v for k, v in terms.items()}, on_step=False, on_epoch=True, sync_dist=True
            )
        if not any(c.soft_targets for c in components):  # mixed inputs have no single label to score
            self.train_metrics[self.task.train_metric].update(self.task.train_values(outputs.detach(), y))
            self.log_dict(self.train_metrics, on_step=False, on_epoch=True)
        return loss

    def _eval_step(self, batch: Any, stage: str, metrics: MetricCollection) -> torch.Tensor:
        x, y = batch[0], batch[1]
        outputs = self(x)
        loss = self.loss_fn(outputs, y)
        metrics.update(*self.task.metric_inputs(outputs.detach(), y))
        self.log(f"{stage}/loss", loss, on_epoch=True, prog_bar=True, sync_dist=True)
        self.log_dict(metrics, on_step=False, on_epoch=True, prog_bar=True)
        return outputs

    def validation_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self._eval_step(batch, "val", self.val_metrics)

    def test_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self._eval_step(batch, "test", self.test_metrics)

    def predict_step(
        self, batch: Any, batch_idx: int = 0, dataloader_idx: int = 0
    ) -> dict[str, torch.Tensor]:
        """The one predict path (`predict`, `make predict`, ensembles): the task's scores, pooled features."""
        x = batch[0] if isinstance(batch, (list, tuple)) else batch
        if self.hparams.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        features = self.backbone(x)
        return {"scores": self.task.scores(self.head(features)), "embeddings": features}

    # ---------------------------------------------------------------- fit set-up
    def setup(self, stage: str) -> None:
        self.configure_model()
        if stage != "fit":
            return
        hp, task = self.hparams, self.task
        if hp.layer_decay is not None and not hasattr(self.backbone, "group_matcher"):
            raise ConfigError(
                f"model.layer_decay={hp.layer_decay}: the backbone ({type(self.backbone).__name__}) declares no "
                "stages (timm's `group_matcher`); give it one, or leave layer_decay null"
            )
        if (hp.class_weights == "balanced" or hp.bias_from_priors) and not task.classification:
            key = "model.class_weights" if hp.class_weights == "balanced" else "model.bias_from_priors"
            raise ConfigError(f"{key}: class frequencies do not exist for a {task.kind} task; leave it off")
        if hp.class_weights == "balanced":  # a buffer of the loss: saved with the model's state
            weights = balanced_weights(self.trainer.datamodule, len(task.names)).to(self.device)
            self.loss_fn = task.build_loss(hp.label_smoothing, weights)
        # Before a resumed checkpoint is restored, so a resume keeps its trained bias.
        if hp.bias_from_priors:
            heads.init_bias_from_priors(
                self.head[-1], heads.class_priors(self.trainer.datamodule, task), task
            )

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        try:
            check_head_compatible(checkpoint, self)
        except WeightsError as error:
            path = self._trainer.ckpt_path if self._trainer is not None else None
            if path is None:
                raise
            raise incompatible_checkpoint(path, str(error).rstrip(".")) from error

    # ---------------------------------------------------------------- optimization
    def param_groups(self) -> list[dict[str, Any]]:
        """Named groups (`head`, `backbone`, their `_no_decay` twins) of every parameter, frozen or not:
        unfreezing later needs them in the optimizer, and frozen ones get no gradient, so the optimizer
        leaves them and their weight decay alone. No weight decay on norms and biases."""
        hp = self.hparams
        return finetune_param_groups(
            self.backbone, self.head, hp.lr, hp.weight_decay, hp.backbone_lr_mult, hp.layer_decay, self
        )

    def configure_optimizers(self) -> Any:
        return optimizer_and_schedule(self, self.param_groups())


ImageClassifier = Model  # the name of earlier versions
