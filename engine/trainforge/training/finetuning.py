"""Fine-tuning a pretrained backbone (`finetune.*` in the config): freezing, progressive unfreezing,
BatchNorm kept in eval mode, and the head initialised by a linear probe, on Lightning's `BaseFinetuning`.

The backbone is split into stages with timm's own `group_matcher(coarse=True)` (stem, then each stage);
a backbone without one (your own module) can still be frozen whole, and the stage options refuse.
What is trainable at an epoch is a pure function of that epoch, and it is applied again at the start of
every epoch. This is how resume works mid-schedule: Lightning's `BackboneFinetuning` unfreezes only on
the exact epoch and a resumed run keeps it frozen (#21901, open).

All parameter groups are in the optimizer from the first step (frozen ones simply get no gradient, so
AdamW/SGD leave them and their weight decay alone): `unfreeze_and_add_param_group` would add groups that
the template's per-step warmup/cosine schedule never sees, and that a resumed optimizer cannot load.
"""

from __future__ import annotations

import warnings
from typing import Any, Literal

import lightning as L
from lightning.pytorch.callbacks import BaseFinetuning
from timm.models import group_modules
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.optim import Optimizer

from trainforge.training import wise
from trainforge.training.checkpointing import report_weights
from trainforge.training.components import refuse
from trainforge.training.linear_probe import init_head_by_linear_probe


def backbone_stages(backbone: nn.Module) -> list[list[nn.Module]] | None:
    """The backbone's modules grouped in order (stem first), from timm's coarse `group_matcher`; None for a
    backbone that declares no stages."""
    if not hasattr(backbone, "group_matcher"):
        return None
    groups = group_modules(backbone, backbone.group_matcher(coarse=True))
    named = dict(backbone.named_modules())
    return [[named[name] for name in groups[key] if name in named] for key in sorted(groups)]


def trainable_stages(
    epoch: int,
    num_stages: int,
    freeze_backbone: bool = False,
    freeze_stages: int = 0,
    unfreeze_at_epoch: int | None = None,
    unfreeze_stage_every: int = 0,
) -> set[int]:
    """Indices of the backbone stages that train at `epoch` (0-based).

    - `freeze_backbone`: none, ever (feature extraction: only the head trains).
    - `freeze_stages=N`: the first N stages never train.
    - `unfreeze_at_epoch=K`: none before epoch K; from K all (but the first N), or with
      `unfreeze_stage_every=E` one more stage from the top every E epochs.
    """
    if freeze_backbone:
        return set()
    allowed = list(range(min(freeze_stages, num_stages), num_stages))
    if unfreeze_at_epoch is None:
        return set(allowed)
    if epoch < unfreeze_at_epoch:
        return set()
    if unfreeze_stage_every <= 0:
        return set(allowed)
    count = 1 + (epoch - unfreeze_at_epoch) // unfreeze_stage_every
    return set(allowed[::-1][:count])


class Finetuning(BaseFinetuning):
    """Freezing schedule, BatchNorm statistics and head initialisation of a pretrained backbone.

    Always in the callbacks (config key `finetune`); with every option at its default it does nothing.

    Args:
        freeze_backbone: Train the head only (feature extraction); frozen BatchNorm stays in eval mode.
        freeze_stages: Never train the first N backbone stages (the stem counts as the first).
        unfreeze_at_epoch: Train the head only before this epoch, then unfreeze (all, or stage by stage).
        unfreeze_stage_every: With `unfreeze_at_epoch`: one more stage from the top every N epochs (0: all).
        bn_eval: Keep every BatchNorm of the backbone in eval mode (statistics frozen, affine trained).
        bn_adapt_epochs: With `bn_eval`: the trainable layers' BatchNorm statistics first adapt to the new
            data (train mode) for this many epochs, then freeze.
        head_init: `default`, or `linear_probe`: before the first step of a fresh fit, fit the head's last
            layer as a logistic regression on the frozen backbone's features of the training split (LP-FT).
        probe_c: Inverse L2 strength of that logistic regression (sklearn's C); a list: each is fitted and
            the best on the validation (selection) split is kept. The probe's metrics on every split go to
            summary.json (`linear_probe`): the figure the fine-tune must beat.
        wise_alphas: WiSE-FT (training/wise.py): after training, the weights become (1 - a) * start + a *
            last epoch, `a` chosen from these on the validation (selection) split; 0 is the start itself
            (with `head_init: linear_probe`, the probe). Saved as `checkpoints/wise.ckpt`, the checkpoint the
            run reports; summary.json `wise` gives every `a`'s validation score.
        wise_evidence_p: Below 1: the kept `a` (`wise_keep`) stays unless the best-scoring `a` beats it
            on the selection split sample by sample, one-sided sign test p below this (summary.json
            `wise.test`); 1: simply the best score.
        wise_keep: Which `a` holds without that evidence: `finetune` (the largest) or `probe` (the smallest,
            the start): the safe fallback, a fine-tune is reported only when the selection split shows it
            ahead of its probe.
        probe_cv_folds: 0: the probe's C is chosen on the selection split. N >= 2: by stratified N-fold
            cross-validation on the training split, which leaves the selection split unused by the probe (its
            score there is then no longer a winner-of-several) and reports the probe's cross-validated
            accuracy (`linear_probe.cv/acc`).
        wise_audit: For the recipe study (docs/recipe-study.md): with `wise_alphas`, each of these `a` is
            also evaluated on the selection split (per sample) and on the reported split, and summary.json
            `wise_audit` keeps them, so that `make recipe-study` replays selection rules without training
            again. It reads the reported split of every candidate: a study's record, not a choice. One
            process only (the per-sample values are not gathered over ranks).
    """

    def __init__(
        self,
        freeze_backbone: bool = False,
        freeze_stages: int = 0,
        unfreeze_at_epoch: int | None = None,
        unfreeze_stage_every: int = 0,
        bn_eval: bool = False,
        bn_adapt_epochs: int = 0,
        head_init: Literal["default", "linear_probe"] = "default",
        probe_c: float | list[float] = 0.1,
        wise_alphas: list[float] | None = None,
        wise_evidence_p: float = 1.0,
        wise_keep: Literal["finetune", "probe"] = "finetune",
        probe_cv_folds: int = 0,
        wise_audit: list[float] | None = None,
    ) -> None:
        super().__init__()
        self.options = {
            "freeze_backbone": freeze_backbone,
            "freeze_stages": freeze_stages,
            "unfreeze_at_epoch": unfreeze_at_epoch,
            "unfreeze_stage_every": unfreeze_stage_every,
        }
        self.bn_eval = bn_eval
        self.bn_adapt_epochs = bn_adapt_epochs
        self.head_init = head_init
        self.probe_c = probe_c
        self.wise_alphas = wise_alphas
        if not 0 < wise_evidence_p <= 1:
            raise refuse(
                "finetune.wise_evidence_p",
                f"a p-value threshold must be in (0, 1], got {wise_evidence_p}",
                "use e.g. 0.3, or 1 for the plain best score on the selection split",
            )
        self.wise_evidence_p = wise_evidence_p
        if probe_cv_folds < 0 or probe_cv_folds == 1:
            raise refuse(
                "finetune.probe_cv_folds",
                f"cross-validation needs 2 folds or more, got {probe_cv_folds}",
                "use e.g. 5, or 0 to choose C on the selection split",
            )
        self.wise_keep = wise_keep
        self.probe_cv_folds = probe_cv_folds
        self.wise_audit = wise_audit
        self.audit_report: dict[str, Any] = {}
        self.trainable: set[int] | None = None
        self.probe_report: dict[str, Any] = {}
        self.wise_start: dict[str, Any] | None = None  # the weights as training starts, for WiSE-FT
        self.wise_report: dict[str, Any] = {}

    @property
    def freezing(self) -> bool:
        o = self.options
        return bool(
            o["freeze_backbone"] or o["freeze_stages"] or o["unfreeze_at_epoch"] is not None
            or o["unfreeze_stage_every"] or self.bn_eval
        )  # fmt: skip

    @property
    def state_key(self) -> str:
        return self._generate_state_key(**self.options)

    def _stages(self, pl_module: L.LightningModule) -> list[list[nn.Module]]:
        return backbone_stages(pl_module.backbone) or [[pl_module.backbone]]

    def check(self, pl_module: L.LightningModule) -> None:
        needs_stages = [k for k in ("freeze_stages", "unfreeze_stage_every") if self.options[k]]
        if needs_stages and backbone_stages(pl_module.backbone) is None:
            raise refuse(
                f"finetune.{needs_stages[0]}",
                f"the backbone ({type(pl_module.backbone).__name__}) declares no stages (timm's `group_matcher`)",
                "give it a group_matcher, or use finetune.freeze_backbone / unfreeze_at_epoch, which need none",
            )
        if self.head_init == "linear_probe":
            task, last = (
                pl_module.task,
                pl_module.head[-1] if isinstance(pl_module.head, nn.Sequential) else None,
            )
            if (
                not task.classification
                or not isinstance(last, nn.Linear)
                or pl_module.hparams.get("head_hidden")
            ):
                raise refuse(
                    "finetune.head_init=linear_probe",
                    f"it fits a linear classifier head, and this is a {task.kind} task with head "
                    f"{type(pl_module.head).__name__}",
                    "use a classification task with the default linear head (no head_hidden), or head_init: default",
                )

    def apply(self, pl_module: L.LightningModule, epoch: int) -> set[int]:
        """Make exactly the stages scheduled for `epoch` trainable; frozen ones in eval mode."""
        stages = self._stages(pl_module)
        trainable = trainable_stages(epoch, len(stages), **self.options)
        frozen_stats = self.bn_eval and epoch >= self.bn_adapt_epochs
        for index, modules in enumerate(stages):
            if index in trainable:
                self.make_trainable(modules)
                for module in self.flatten_modules(modules):
                    module.train(pl_module.training and not (frozen_stats and isinstance(module, _BatchNorm)))
            else:
                self.freeze(modules, train_bn=False)
                for module in self.flatten_modules(modules):
                    if isinstance(module, _BatchNorm):
                        module.eval()  # frozen statistics: eval mode uses and keeps the running stats
        self.trainable = trainable
        return trainable

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        pl_module.configure_model()  # built lazily; freezing needs the modules
        if stage == "fit":
            self.check(pl_module)
        if self.freezing:
            # Frozen stages and BatchNorm kept in eval mode are this callback's intent, not a mistake.
            warnings.filterwarnings(
                "ignore", message=r"Found \d+ module\(s\) in eval mode at the start of training"
            )
            super().setup(trainer, pl_module, stage)

    def freeze_before_training(self, pl_module: L.LightningModule) -> None:
        # Before configure_optimizers; the resumed epoch is not known yet, on_train_epoch_start fixes it.
        self.apply(pl_module, 0)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_fit_start(trainer, pl_module)
        # A fresh fit only: a resumed one already has its trained head.
        if self.head_init == "linear_probe" and trainer.ckpt_path is None:
            self.probe_report = init_head_by_linear_probe(
                pl_module, trainer.datamodule, self.probe_c, self.probe_cv_folds
            )

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.wise_alphas and self.wise_start is None:  # a resumed run restored it with its state
            self.wise_start = wise.snapshot(pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        stopped = any(getattr(cb, "preempted", False) for cb in trainer.callbacks)
        if not self.wise_alphas or self.wise_start is None or stopped:
            return  # WiSE-FT blends finished runs only: a preempted or interrupted one resumes first
        if self.wise_audit and trainer.world_size == 1:
            self.audit_report = wise.audit(trainer, pl_module, self.wise_start, self.wise_audit)
        elif self.wise_audit and trainer.is_global_zero:
            # Per-image records are gathered on one process only: a study runs on one.
            warnings.warn(
                "finetune.wise_audit is a one-process study record: not written under DDP", stacklevel=1
            )
        self.wise_report = wise.choose(
            trainer, pl_module, self.wise_start, self.wise_alphas, self.wise_evidence_p, self.wise_keep
        )
        report_weights(trainer, "wise.ckpt", f"WiSE-FT: a={self.wise_report['alpha']} chosen on val")

    def summary_fields(self) -> dict[str, Any]:
        fields = {"linear_probe": self.probe_report} if self.probe_report else {}
        fields = {**fields, "wise": self.wise_report} if self.wise_report else fields
        return {**fields, "wise_audit": self.audit_report} if self.audit_report else fields

    def state_dict(self) -> dict[str, Any]:
        # A resumed run still reports its probe, and still blends with the weights it started from.
        return {**super().state_dict(), "probe_report": self.probe_report, "wise_start": self.wise_start}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.probe_report = state_dict.get("probe_report", {})
        self.wise_start = state_dict.get("wise_start")
        super().load_state_dict(state_dict)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.freezing:
            super().on_train_epoch_start(trainer, pl_module)

    def finetune_function(self, pl_module: L.LightningModule, epoch: int, optimizer: Optimizer) -> None:
        self.apply(pl_module, epoch)
