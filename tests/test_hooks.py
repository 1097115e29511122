"""The project's two hooks and its examples, without training: data shapes, tasks, no split leaks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from template.data import ProjectData
from template.examples.regression import Diabetes
from template.examples.tabular import MLP, BreastCancer
from template.model import ProjectModel
from trainforge.tasks import Binary, Multiclass, Regression


def test_project_data_gives_digit_images_and_declares_its_task():
    dm = ProjectData(image_size=32, num_workers=0)
    dm.setup()
    sizes = [len(dm.view(s)) for s in ("train", "val", "test")]
    assert sum(sizes) == 1797 and sizes[1] == sizes[2] and sizes[0] > 1200
    x, y = dm.view("train")[0]
    assert x.shape == (1, 32, 32) and 0 <= int(y) < 10
    assert (
        isinstance(dm.task, Multiclass) and dm.task.names == [str(d) for d in range(10)] and dm.in_chans == 1
    )


def test_project_model_builds_the_default_backbone_after_init():
    model = ProjectModel(task=Multiclass(list("abc")), in_chans=1, backbone="resnet10t")
    assert model.backbone is None  # built by configure_model, after every __init__ attribute exists
    model.configure_model()
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 3)


@pytest.mark.parametrize(
    ("cls", "kind", "features"), [(BreastCancer, Binary, 30), (Diabetes, Regression, 10)]
)
def test_tabular_examples_split_without_leaks_and_standardise_on_train_only(cls, kind, features):
    dm = cls(num_workers=0)
    dm.setup()
    assert isinstance(dm.task, kind) and dm.input_shape == [features]
    parts = [set(p.tolist()) for p in dm.parts]
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert sum(len(p) for p in parts) == len(dm.targets)
    train = dm.features[dm.parts[0]]
    assert np.allclose(dm.preprocessing["mean"], train.mean(0)) and not np.allclose(
        dm.preprocessing["mean"], dm.features.mean(0)
    )
    x, _ = dm.view("train")[0]
    assert (
        x.shape == (features,)
        and abs(float(torch.stack([dm.view("train")[i][0] for i in range(50)]).mean())) < 0.5
    )


def test_regression_task_standardises_targets_with_the_training_split():
    dm = Diabetes(num_workers=0)
    train = dm.targets[dm.parts[0]]
    assert dm.task.mean == pytest.approx([train.mean()]) and dm.task.std == pytest.approx([train.std(ddof=1)])


def test_own_module_hook_reads_attributes_set_after_super_init():
    model = MLP(hidden=12, task=Binary(["no", "yes"]), input_shape=[30])
    model.configure_model()
    assert model.backbone.num_features == 12 and model.head[-1].out_features == 1
    assert model(torch.randn(4, 30)).shape == (4, 1)
