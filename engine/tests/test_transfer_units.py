"""Transfer learning, pieces: weight loading, heads, schedules of freezing, LR groups, image data."""

from __future__ import annotations

import math

import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from tests.transfer_helpers import make_folder, save_timm_weights
from trainforge.data.csv_list import CsvDataModule
from trainforge.data.image_folder import ImageFolderDataModule
from trainforge.errors import TemplateError
from trainforge.models import heads
from trainforge.models.backbone import WeightsError, check_head_compatible, create_backbone
from trainforge.tasks import Multiclass, Multilabel
from trainforge.training.finetuning import backbone_stages, trainable_stages
from trainforge.training.lr_groups import finetune_param_groups


# ------------------------------------------------------------------ weights
def test_local_safetensors_loads_every_backbone_tensor_and_drops_the_classifier(tmp_path):
    state = save_timm_weights(tmp_path / "w.safetensors")
    model = create_backbone("resnet10t", weights=str(tmp_path / "w.safetensors"))
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key
    assert not any(k.startswith("fc.") for k in model.state_dict())


def test_pth_with_state_dict_wrapper_and_module_prefix(tmp_path):
    state = save_timm_weights(tmp_path / "w.safetensors")
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "w.pth")
    model = create_backbone("resnet10t", weights=str(tmp_path / "w.pth"))
    assert torch.equal(model.state_dict()["conv1.0.weight"], state["conv1.0.weight"])


def test_partial_load_is_refused_unless_not_strict(tmp_path):
    state = save_timm_weights(tmp_path / "w.safetensors")
    del state["layer4.0.conv1.weight"]
    state["extra.weight"] = torch.zeros(2)
    save_file(state, str(tmp_path / "partial.safetensors"))
    with pytest.raises(
        WeightsError, match=r"partial match.*layer4\.0\.conv1\.weight.*extra\.weight.*strict_weights"
    ):
        create_backbone("resnet10t", weights=str(tmp_path / "partial.safetensors"))
    model = create_backbone("resnet10t", weights=str(tmp_path / "partial.safetensors"), strict=False)
    assert torch.equal(model.state_dict()["conv1.0.weight"], state["conv1.0.weight"])


def test_shape_mismatch_lists_the_keys_and_other_architecture_is_refused(tmp_path):
    state = save_timm_weights(tmp_path / "w.safetensors")
    state["conv1.0.weight"] = torch.zeros(1, 1, 1, 1)
    save_file(state, str(tmp_path / "bad.safetensors"))
    with pytest.raises(WeightsError, match=r"(?s)1 shape mismatches.*conv1\.0\.weight: file \(1, 1, 1, 1\)"):
        create_backbone("resnet10t", weights=str(tmp_path / "bad.safetensors"))
    save_timm_weights(tmp_path / "mobile.safetensors", "mobilenetv3_small_050")
    with pytest.raises(WeightsError, match="another architecture"):
        create_backbone("resnet10t", weights=str(tmp_path / "mobile.safetensors"))


def test_missing_file_and_offline_hub_errors_say_what_to_do(tmp_path, monkeypatch):
    with pytest.raises(WeightsError, match=r"not found.*convert-weights"):
        create_backbone("resnet10t", weights=str(tmp_path / "nope.safetensors"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsError, match=r"needs the hub.*--model.weights=<file>\.safetensors"):
        create_backbone("resnet10t", weights="hub")


@pytest.mark.parametrize(
    "prefix", ["backbone.", "backbone._orig_mod.", "_orig_mod.backbone.", "model.backbone."]
)
def test_lightning_checkpoint_backbone_part_with_and_without_compile_prefixes(tmp_path, prefix):
    state = save_timm_weights(tmp_path / "w.safetensors")
    ckpt = {
        "pytorch-lightning_version": "2.6.0",
        "state_dict": {
            **{prefix + k: v for k, v in state.items() if not k.startswith("fc.")},
            "head.1.weight": torch.zeros(5, 512),
        },
    }
    if prefix == "model.backbone.":  # a wrapper module named `model`: not a template checkpoint layout
        ckpt["state_dict"] = {k.replace("model.", "", 1): v for k, v in ckpt["state_dict"].items()}
    torch.save(ckpt, tmp_path / "run.ckpt")
    model = create_backbone("resnet10t", weights=str(tmp_path / "run.ckpt"))
    assert torch.equal(model.state_dict()["layer1.0.conv1.weight"], state["layer1.0.conv1.weight"])


def test_checkpoint_with_another_number_of_classes_gets_a_clear_error():
    head = torch.nn.Sequential(torch.nn.Dropout(), torch.nn.Linear(4, 12))
    model = torch.nn.Module()
    model.head = head
    ckpt = {"state_dict": {"head.1.weight": torch.zeros(10, 4), "head.1.bias": torch.zeros(10)}}
    with pytest.raises(WeightsError, match=r"another number of classes.*--model.weights"):
        check_head_compatible(ckpt, model)


# -------------------------------------------------------------------- heads
def test_head_hidden_layer_wider_outputs_and_prior_bias():
    head = heads.build_head(16, 5, hidden=8, dropout=0.2)
    assert [type(m).__name__ for m in head] == ["Linear", "GELU", "Dropout", "Linear"]
    assert head[-1].out_features == 5
    priors = [0.5, 0.3, 0.2]
    heads.init_bias_from_priors(head[-1], priors, Multiclass(["a", "b", "c"]))
    assert torch.allclose(head[-1].bias[:3], torch.log(torch.tensor(priors)))
    assert head[-1].bias[3:].max() < head[-1].bias[:3].min()  # spare outputs start unlikely
    heads.init_bias_from_priors(head[-1], priors, Multilabel(["a", "b", "c"]))
    assert math.isclose(float(head[-1].bias[0].detach()), 0.0, abs_tol=1e-6)  # log(0.5 / 0.5)
    assert math.isclose(float(head[-1].bias[1].detach()), math.log(0.3 / 0.7), rel_tol=1e-5)


def test_multilabel_loss_and_metrics():
    task = Multilabel(["a", "b", "c"])
    loss = task.build_loss()
    assert isinstance(loss, torch.nn.BCEWithLogitsLoss)
    metrics = task.build_metrics()
    target = torch.tensor([[1, 0, 1], [0, 1, 0]])
    metrics.update(torch.tensor([[5.0, -5, 5], [-5, 5, 5]]), target)
    assert math.isclose(float(metrics.compute()["acc"]), 5 / 6, rel_tol=1e-6)
    with pytest.raises(TemplateError, match="label_smoothing applies to single-label"):
        task.build_loss(label_smoothing=0.1)


# ---------------------------------------------------------- freezing schedule
def test_trainable_stages_schedule():
    assert trainable_stages(3, 5, freeze_backbone=True) == set()
    assert trainable_stages(0, 5, freeze_stages=2) == {2, 3, 4}
    assert trainable_stages(0, 5, unfreeze_at_epoch=1) == set()
    assert trainable_stages(1, 5, unfreeze_at_epoch=1) == {0, 1, 2, 3, 4}
    stagewise = [
        trainable_stages(e, 5, freeze_stages=1, unfreeze_at_epoch=1, unfreeze_stage_every=1) for e in range(6)
    ]
    assert stagewise == [set(), {4}, {3, 4}, {2, 3, 4}, {1, 2, 3, 4}, {1, 2, 3, 4}]


def test_backbone_stages_follow_timm_group_matcher():
    backbone = create_backbone("efficientnet_lite0")
    stages = backbone_stages(backbone)
    assert stages[0] == [backbone.conv_stem, backbone.bn1]
    assert len(stages) >= 8  # stem + 7 block stages (+ conv_head)
    covered = {id(p) for modules in stages for m in modules for p in m.parameters()}
    assert covered == {id(p) for p in backbone.parameters()}


# ---------------------------------------------------------------- LR groups
def test_param_groups_backbone_multiplier_layer_decay_and_no_decay_on_norm_bias():
    backbone = create_backbone("resnet10t")
    head = heads.build_head(backbone.num_features, 3)
    groups = finetune_param_groups(backbone, head, lr=1e-3, weight_decay=0.05, backbone_lr_mult=0.1)
    by_name = {g["name"]: g for g in groups}
    assert by_name["head"]["lr"] == 1e-3 and math.isclose(by_name["backbone"]["lr"], 1e-4)
    for group in groups:
        assert all(p.ndim > 1 for p in group["params"]) == (group["weight_decay"] > 0), group["name"]
    assert sum(len(g["params"]) for g in groups) == len(list(backbone.parameters())) + len(
        list(head.parameters())
    )
    decayed = finetune_param_groups(backbone, head, 1e-3, 0.05, backbone_lr_mult=0.5, layer_decay=0.5)
    backbone_lrs = [g["lr"] for g in decayed if g["name"].startswith("backbone")]
    assert max(backbone_lrs) == pytest.approx(5e-4) and min(backbone_lrs) < 5e-4 / 4


# ------------------------------------------------------------------- data
def test_image_folder_split_priors_cache_and_eval_on_val(tmp_path, monkeypatch):
    root = make_folder(tmp_path / "imgs", {"train": 20})
    dm = ImageFolderDataModule(str(root), image_size=32, num_workers=0, batch_size=4)
    assert dm.class_names == ["circle", "square", "stripes"]
    dm.setup()
    # Neither val/ nor test/: 15% of train is reported, and selection uses 15% of the rest.
    train, val, test = (dm.view(s) for s in ("train", "val", "test"))
    assert len(test) == 9 and len(val) + len(train) == 51 and len(val) >= 6
    assert not set(test.ids) & (set(val.ids) | set(train.ids)) and not set(val.ids) & set(train.ids)
    assert heads.class_priors(dm, dm.task).tolist() == pytest.approx([1 / 3] * 3, abs=0.02)
    fields = dm.summary_fields()
    assert fields["evaluated_on"] == "15% of train (no val or test split)"
    assert fields["selected_on"] == "15% of train (seeded by data.split_seed)"
    x, y = train[0]
    assert tuple(x.shape) == (3, 32, 32) and isinstance(y, int)
    import trainforge.data.images as images

    calls = []
    real = images.load_image
    monkeypatch.setattr(images, "load_image", lambda p: calls.append(p) or real(p))
    for _ in range(2):  # two "epochs": files are decoded once
        for i in range(len(val)):
            val[i]
    assert len(calls) == len(set(calls)) <= len(val)


def test_without_test_split_the_reported_val_folder_is_never_selected_on(tmp_path):
    """The issue's case: train/ and val/ only. val/ is what the run reports (the test role); best epoch, early
    stopping and WiSE-FT's choice read the selection split, carved from train/ only."""
    root = make_folder(tmp_path / "imgs", {"train": 12, "val": 4}, classes=("a", "b"))
    dm = ImageFolderDataModule(str(root), image_size=32, num_workers=0)
    dm.setup()
    train_files = {str(p) for p in (root / "train").rglob("*.jpg")}
    val_files = {str(p) for p in (root / "val").rglob("*.jpg")}
    assert set(dm.view("test").ids) == val_files  # reported: the whole val/ folder
    assert set(dm.view("val").ids) <= train_files and len(dm.view("val")) == 4  # 15% of 24, stratified
    assert not set(dm.view("val").ids) & set(dm.view("train").ids)
    fields = dm.summary_fields()
    assert fields["evaluated_on"] == "val (no test split)" and fields["selected_on"].startswith(
        "15% of train"
    )


def test_image_folder_errors(tmp_path):
    # The folder is read when the task is first needed (the CLI's link to the model), not at construction.
    with pytest.raises(FileNotFoundError, match="data.root: folder .*missing not found"):
        _ = ImageFolderDataModule(str(tmp_path / "missing")).task
    root = make_folder(tmp_path / "one", {"train": 2}, classes=("only",))
    with pytest.raises(ValueError, match="at least 2"):
        _ = ImageFolderDataModule(str(root)).task
    root = make_folder(tmp_path / "two", {"train": 2}, classes=("a", "b"))
    (root / "train" / "empty").mkdir()
    with pytest.raises(ValueError, match="no images in .*: empty"):
        _ = ImageFolderDataModule(str(root)).task


def test_unreadable_image_is_named_or_skipped_with_a_warning(tmp_path):
    root = make_folder(tmp_path / "imgs", {"train": 10, "test": 2}, classes=("a", "b"))
    bad = root / "test" / "a" / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    dm = ImageFolderDataModule(str(root), image_size=32, num_workers=0)
    dm.setup()
    with pytest.raises(OSError, match=r"broken\.jpg.*skip_bad_images"):
        [dm.view("test")[i] for i in range(len(dm.view("test")))]
    dm = ImageFolderDataModule(str(root), image_size=32, num_workers=0, skip_bad_images=True)
    with pytest.warns(UserWarning, match=r"(?s)skipped 1 unreadable.*broken\.jpg"):
        dm.setup()
    assert len(dm.view("test")) == 4 and dm.summary_fields()["evaluated_on"] == "test"


def test_csv_list_single_and_multilabel(tmp_path):
    root = make_folder(tmp_path / "imgs", {"train": 8}, classes=("a", "b"))
    rows = [f"train/{c}/{i:03d}.jpg,{c}" for c in "ab" for i in range(8)]
    (root / "train.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    dm = CsvDataModule(str(root / "train.csv"), image_size=32, num_workers=0)
    dm.setup()
    assert dm.class_names == ["a", "b"] and sum(len(dm.view(s)) for s in ("train", "val", "test")) == 16
    multi = [f"train/a/{i:03d}.jpg,a;b" for i in range(6)] + [f"train/b/{i:03d}.jpg,b" for i in range(6)]
    (root / "multi.csv").write_text("\n".join(multi) + "\n")
    dm = CsvDataModule(str(root / "multi.csv"), multilabel=True, image_size=32, num_workers=0)
    dm.setup()
    assert isinstance(dm.task, Multilabel) and dm.task.names == ["a", "b"]
    train = dm.view("train")
    targets = {tuple(train[i][1].tolist()) for i in range(len(train))}
    assert targets <= {(1.0, 1.0), (0.0, 1.0)}
    (root / "bad.csv").write_text("train/a/000.jpg,a\nnowhere.jpg,b\n")
    with pytest.raises(FileNotFoundError, match="nowhere.jpg"):
        _ = CsvDataModule(str(root / "bad.csv")).task


def test_image_file_never_upscaled_in_cache(tmp_path):
    from trainforge.data.images import shrink

    img = Image.new("RGB", (100, 50))
    assert shrink(img, 80).size == (100, 50) and shrink(img, 25).size == (50, 25)


def test_rgb_weights_adapt_to_a_grey_input(tmp_path):
    state = save_timm_weights(tmp_path / "w.safetensors")
    model = create_backbone("resnet10t", in_chans=1, weights=str(tmp_path / "w.safetensors"))
    assert torch.allclose(model.conv1[0].weight, state["conv1.0.weight"].sum(dim=1, keepdim=True))


def test_image_experiments_use_the_backbone_input_size():
    # The digits base config sets data.image_size=32; jsonargparse carries same-named arguments over to
    # another data class, so the image experiments must reset it to follow the backbone.
    import yaml

    from tests.conftest import CONFIGS

    for name in ("finetune", "feature_extract"):
        config = yaml.safe_load((CONFIGS / "experiments" / f"{name}.yaml").read_text())
        assert (
            "image_size" in config["data"]["init_args"] and config["data"]["init_args"]["image_size"] is None
        )
