"""Freezing and progressive unfreezing of a timm backbone, on Lightning's `BaseFinetuning`.

The backbone is split into stages with timm's own `group_matcher(coarse=True)` (stem, then each stage).
What is trainable at an epoch is a pure function of that epoch, and it is applied again at the start of
every epoch. This is how resume works mid-schedule: Lightning's `BackboneFinetuning` unfreezes only on
the exact epoch and a resumed run keeps it frozen (#21901, open).

All parameter groups are in the optimizer from the first step (frozen ones simply get no gradient, so
AdamW/SGD leave them and their weight decay alone): `unfreeze_and_add_param_group` would add groups that
the template's per-step warmup/cosine schedule never sees, and that a resumed optimizer cannot load.
"""

from __future__ import annotations

import lightning as L
from lightning.pytorch.callbacks import BaseFinetuning
from timm.models import group_modules
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.optim import Optimizer


def backbone_stages(backbone: nn.Module) -> list[list[nn.Module]]:
    """The backbone's modules grouped in order (stem first), from timm's coarse `group_matcher`."""
    if not hasattr(backbone, "group_matcher"):
        return [[backbone]]
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


class FreezeUnfreeze(BaseFinetuning):
    """Keeps the frozen stages frozen, with BatchNorm in eval mode, and unfreezes on schedule.

    Added by `ImageClassifier.configure_callbacks` when any freezing option is set.
    """

    def __init__(
        self,
        freeze_backbone: bool = False,
        freeze_stages: int = 0,
        unfreeze_at_epoch: int | None = None,
        unfreeze_stage_every: int = 0,
        bn_eval: bool = False,
        bn_adapt_epochs: int = 0,
        backbone_attr: str = "backbone",
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
        self.backbone_attr = backbone_attr
        self.trainable: set[int] | None = None

    @property
    def state_key(self) -> str:
        return self._generate_state_key(**self.options)

    def _stages(self, pl_module: L.LightningModule) -> list[list[nn.Module]]:
        return backbone_stages(getattr(pl_module, self.backbone_attr))

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

    def freeze_before_training(self, pl_module: L.LightningModule) -> None:
        # Before configure_optimizers; the resumed epoch is not known yet, on_train_epoch_start fixes it.
        self.apply(pl_module, 0)

    def finetune_function(self, pl_module: L.LightningModule, epoch: int, optimizer: Optimizer) -> None:
        self.apply(pl_module, epoch)


def has_freezing(
    freeze_backbone: bool, freeze_stages: int, unfreeze_at_epoch: int | None, unfreeze_stage_every: int
) -> bool:
    return bool(freeze_backbone or freeze_stages or unfreeze_at_epoch is not None or unfreeze_stage_every)
