"""Hook 2, your model. Fill in `build_backbone` and `build_head` (optionally `build_loss`, `build_metrics`);
the engine does the rest (optimizer groups, schedules, the task's loss and metrics, checkpoints, and
every feature switched on from the config: freezing, EMA, SWA, mixup...).

The hooks run after `__init__`, so they may read anything you set there. A backbone maps inputs to pooled
features `(N, num_features)` and has a `num_features` attribute; `examples/tabular.py` shows your own
`nn.Module` in place of timm.
"""

from __future__ import annotations

from torch import nn

from trainforge.models import Model


class ProjectModel(Model):
    """The project's model: by default a timm backbone by name (`model.backbone`) and a linear head."""

    def build_backbone(self) -> nn.Module:
        # e.g. torchvision: m = torchvision.models.resnet18(); m.fc = nn.Identity(); m.num_features = 512
        return super().build_backbone()  # timm.create_model(backbone, num_classes=0), pretrained weights

    def build_head(self, num_features: int) -> nn.Module:
        return super().build_head(num_features)  # dropout + linear to the task's outputs
