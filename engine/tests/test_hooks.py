"""The user hooks: a DataModule and a classifier filled in the way the README shows."""

import lightning as L
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from trainforge.data import DataModule, DigitsDataModule, Splits
from trainforge.models import ImageClassifier


class TinyData(DataModule):
    """Exactly the README example: two hooks, nothing else."""

    def __init__(self, batch_size: int = 8) -> None:
        super().__init__(batch_size=batch_size, num_workers=0)
        self.class_names = ["neg", "pos"]

    def build_datasets(self) -> Splits:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(40, 3, 16, 16, generator=g)
        y = (x.mean(dim=(1, 2, 3)) > 0).long()
        return Splits(train=TensorDataset(x[:32], y[:32]), val=TensorDataset(x[32:], y[32:]))

    def build_transforms(self, stage):
        return (lambda t: t * 0) if stage == "eval" else None


class LinearClassifier(ImageClassifier):
    def build_backbone(self) -> nn.Module:
        backbone = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 12))
        backbone.num_features = 12
        return backbone

    def build_head(self, num_features: int) -> nn.Module:
        return nn.Sequential(nn.ReLU(), nn.Linear(num_features, self.num_classes))


def test_datamodule_hooks_drive_the_loaders():
    dm = TinyData()
    dm.setup("fit")
    assert dm.num_classes == 2 and dm.in_chans == 3
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (8, 3, 16, 16) and x.abs().sum() > 0
    xv, _ = next(iter(dm.val_dataloader()))
    assert xv.abs().sum() == 0  # the eval transform was applied to validation only
    assert not dm.has_split("test")
    with pytest.raises(ValueError, match="no 'test' dataset"):
        dm.test_dataloader()


@pytest.mark.parametrize("persistent", [True, False])
def test_workers_persist_across_epochs_unless_switched_off(persistent):
    dm = DigitsDataModule(image_size=8, num_workers=1, persistent_workers=persistent)
    dm.setup("fit")
    assert dm.train_dataloader().persistent_workers is persistent
    assert dm.val_dataloader().persistent_workers is persistent
    assert DigitsDataModule(image_size=8, num_workers=0).train_dataloader().persistent_workers is False


def test_base_hook_says_what_to_fill_in():
    with pytest.raises(NotImplementedError, match="build_datasets"):
        DataModule().setup()


def test_model_hooks_replace_backbone_and_head_and_train():
    L.seed_everything(0)
    model = LinearClassifier(num_classes=2, lr=0.01)
    model.configure_model()
    assert isinstance(model.backbone[1], nn.Linear) and isinstance(model.head[1], nn.Linear)
    before = model.head[1].weight.detach().clone()
    trainer = L.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.fit(model, TinyData())
    assert not torch.equal(before, model.head[1].weight)
    assert {"train/loss_epoch", "val/loss", "val/acc", "val/f1"} <= set(trainer.callback_metrics)


def test_default_backbone_is_timm_and_sees_digits():
    dm = DigitsDataModule(image_size=16, augment=False)
    model = ImageClassifier(num_classes=dm.num_classes, in_chans=dm.in_chans, backbone="resnet10t")
    model.configure_model()
    dm.setup()
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (64, 1, 16, 16)
    assert model(x).shape == (64, 10)
    assert type(model.backbone).__module__.startswith("timm.")


def test_no_weight_decay_on_norms_and_biases():
    model = ImageClassifier(num_classes=3, backbone="resnet10t", weight_decay=0.1)
    model.configure_model()
    groups = model.param_groups()
    decayed = {id(p) for g in groups if g["weight_decay"] > 0 for p in g["params"]}
    for name, p in model.named_parameters():
        if p.ndim <= 1:
            assert id(p) not in decayed, name
        else:
            assert id(p) in decayed, name
