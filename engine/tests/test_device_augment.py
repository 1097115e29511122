"""Augmentation on the training device (`gpu_augment`, synthetic `uint8`): run here on the CPU device,
the same code path as on a GPU. Also: the balanced sampler sees the trainer's DDP world."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from torch.nn import functional as F

from tests.conftest import last_line, run_cli
from tests.transfer_helpers import make_folder
from trainforge.data import DigitsDataModule
from trainforge.data.device_augment import DeviceAugment
from trainforge.data.image_folder import ImageFolderDataModule
from trainforge.data.sampling import dataset_labels

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_folder(tmp_path_factory.mktemp("gpu_aug") / "imgs", {"train": 6, "test": 2})


def test_device_augment_crops_each_sample_differently_then_normalises():
    torch.manual_seed(0)
    one = torch.randint(0, 256, (1, 3, 40, 40), dtype=torch.uint8)
    batch = one.repeat(8, 1, 1, 1)
    out = DeviceAugment(32, MEAN, STD, scale=(0.2, 1.0), hflip=0.5)(batch)
    assert out.shape == (8, 3, 32, 32) and out.dtype == torch.float32
    assert len({tuple(o.flatten()[:50].tolist()) for o in out}) > 1  # per-sample random crops and flips
    plain = DeviceAugment(32, MEAN, STD)(batch)  # no crop: a resize and the normalisation only
    expected = F.interpolate(one.float() / 255, size=(32, 32), mode="bilinear", antialias=True)
    expected = (expected - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    assert torch.allclose(plain, expected.expand(8, -1, -1, -1), atol=1e-5)
    with pytest.raises(TypeError, match="uint8"):
        DeviceAugment(32, MEAN, STD)(batch.float())


def test_image_folder_sends_uint8_for_training_and_keeps_the_eval_path(folder):
    kwargs = {"image_size": 32, "batch_size": 6, "num_workers": 0}
    gpu = ImageFolderDataModule(str(folder), gpu_augment=True, **kwargs)
    cpu = ImageFolderDataModule(str(folder), **kwargs)
    x, y = next(iter(gpu.train_dataloader()))
    assert x.dtype == torch.uint8 and x.shape == (6, 3, 37, 37)  # ceil(32 / crop_pct 0.875) square
    augmented = gpu.device_transform(x)
    assert augmented.shape == (6, 3, 32, 32) and augmented.dtype == torch.float32
    assert -3 < augmented.mean() < 3  # normalised, not 0..255
    assert cpu.device_transform(x) is x  # nothing to do without gpu_augment
    for a, b in zip(gpu.val_dataloader(), cpu.val_dataloader(), strict=True):
        assert torch.equal(a[0], b[0])  # evaluation: the CPU transform either way
    with pytest.raises(ValueError, match="data.auto_augment"):
        ImageFolderDataModule(str(folder), gpu_augment=True, auto_augment="rand-m9-mstd0.5")


@pytest.mark.slow
def test_fit_with_gpu_augment_through_the_cli(folder, tmp_path):
    # A uint8 batch reaching the model would fail in its first convolution: the run ending proves the
    # device transform ran on every training batch (and not on the float evaluation batches).
    result = run_cli(
        "fit", "--experiment", "finetune", "--run.name=gpuaug", f"--run.root={tmp_path / 'runs'}",
        f"--data.root={folder}", "--data.image_size=32", "--data.num_workers=0", "--data.gpu_augment=true",
        "--data.re_prob=0.25", "--data.color_jitter=0.2", "--data.batch_size=4", "--model.backbone=resnet10t",
        "--finetune.head_init=default", "--trainer.max_epochs=1", "--trainer.enable_progress_bar=false",
        cwd=tmp_path,
    )  # fmt: skip
    run_dir = tmp_path / "runs" / "finetune" / "gpuaug"
    assert last_line(result.stdout) == f"run directory: {run_dir}"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["global_step"] == 3 and 0 <= summary["metrics"]["test/acc"] <= 1


@pytest.mark.slow
def test_bench_with_uint8_batches_normalised_on_the_device(tmp_path):
    out = tmp_path / "u8.json"
    run_cli(
        "bench", "--model", "resnet10t", "--image-size", "16", "--batch-size", "4", "--num-workers", "0",
        "--steps", "2", "--warmup", "1", "--pairs", "1", "--data-args", '{"uint8": true}', "--out", str(out),
        cwd=tmp_path,
    )  # fmt: skip
    result = json.loads(out.read_text())
    assert min(result[k] for k in ("template_imgs_per_s", "raw_imgs_per_s", "loader_imgs_per_s")) > 0


def test_balanced_sampler_shards_for_the_trainers_ranks():
    data = DigitsDataModule(image_size=8, sampler="balanced", num_workers=0)
    data.trainer = SimpleNamespace(world_size=2, global_rank=1, accumulate_grad_batches=1)
    sampler = data.train_dataloader().sampler
    assert (sampler.num_replicas, sampler.rank) == (2, 1)  # each DDP rank draws its own half of the epoch


def test_image_folder_draws_classes_evenly_when_asked(tmp_path):
    uneven = make_folder(tmp_path / "imgs", {"train": 6, "val": 1, "test": 1}, classes=("a", "b"))
    for extra in sorted((uneven / "train" / "b").iterdir())[2:]:
        extra.unlink()  # 6 images of a, 2 of b
    data = ImageFolderDataModule(str(uneven), image_size=16, num_workers=0, sampler="balanced")
    data.setup("fit")
    targets = dataset_labels(data.raw.train).tolist()
    labels = [targets[i] for i in data.train_dataloader().sampler]
    assert sorted(labels) == [0] * 6 + [1] * 6  # the 2 images of b drawn 3 times each
