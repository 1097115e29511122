"""Transfer learning, trained for real on a tiny generated image folder with a random-weight resnet10t."""

from __future__ import annotations

import csv
import inspect
import json

import lightning as L
import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

from tests.conftest import last_line, run_cli
from tests.transfer_helpers import make_folder, save_timm_weights
from trainforge.data.image_folder import ImageFolderDataModule
from trainforge.models import ImageClassifier
from trainforge.training.finetuning import Finetuning, backbone_stages


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("transfer")
    make_folder(root / "imgs", {"train": 8, "test": 3})
    save_timm_weights(root / "w.safetensors")
    return root


class Recorder(L.Callback):
    """Reads the optimizer's learning rates at every step and the backbone after every epoch."""

    def __init__(self) -> None:
        self.lrs: list[dict[str, float]] = []
        self.epochs: list[dict[str, torch.Tensor]] = []
        self.grad_flags: list[bool] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.grad_flags.append(all(p.requires_grad for p in pl_module.backbone.layer4.parameters()))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.lrs.append({g["name"]: g["lr"] for g in trainer.optimizers[0].param_groups})

    def on_train_epoch_end(self, trainer, pl_module):
        self.epochs.append({k: v.detach().clone() for k, v in pl_module.backbone.state_dict().items()})


FINETUNE_KEYS = set(inspect.signature(Finetuning).parameters)


def fit(folder, recorder, max_epochs, ckpt_path=None, callbacks=(), **args):
    """A fit with the engine's pieces and no CLI: the model, and the Finetuning callback from its options."""
    torch.manual_seed(0)
    data = ImageFolderDataModule(str(folder / "imgs"), image_size=32, batch_size=8, num_workers=0)
    finetune = Finetuning(**{k: v for k, v in args.items() if k in FINETUNE_KEYS})
    model = ImageClassifier(
        task=data.task,
        backbone="resnet10t",
        weights=str(folder / "w.safetensors"),
        warmup_epochs=0.5,
        **{k: v for k, v in args.items() if k not in FINETUNE_KEYS},
    )
    model.configure_model()  # built (and the weights read) now, to record the starting backbone
    initial = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    trainer = L.Trainer(
        max_epochs=max_epochs,
        callbacks=[recorder, finetune, *callbacks],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=folder,
    )
    trainer.fit(model, datamodule=data, ckpt_path=ckpt_path)
    return model, initial


def stage_keys(model, index):
    names = {id(m): n for n, m in model.backbone.named_modules()}
    return [f"{names[id(m)]}.{k}" for m in backbone_stages(model.backbone)[index] for k in m.state_dict()]


def test_frozen_exact_unfrozen_changed_and_lr_per_group_at_every_step(folder):
    recorder = Recorder()
    model, initial = fit(
        folder,
        recorder,
        3,
        freeze_stages=1,
        unfreeze_at_epoch=1,
        unfreeze_stage_every=1,
        backbone_lr_mult=0.1,
    )
    stem, stage1, last = stage_keys(model, 0), stage_keys(model, 1), stage_keys(model, -1)
    assert any("running_mean" in k for k in stem)  # BatchNorm statistics are part of "frozen"
    final = model.backbone.state_dict()
    for key in stem:  # freeze_stages=1: never trained, BatchNorm stats included, bit for bit
        assert torch.equal(final[key], initial[key]), key
    for key in initial:  # epoch 0: head only
        assert torch.equal(recorder.epochs[0][key], initial[key]), key
    assert not torch.equal(model.head[-1].weight, torch.zeros_like(model.head[-1].weight))

    def changed(epoch, keys):
        return any(not torch.equal(recorder.epochs[epoch][k], recorder.epochs[epoch - 1][k]) for k in keys)

    assert changed(1, last) and not changed(1, stage1)  # epoch 1: top stage only
    assert changed(2, last) and not changed(2, stage1)  # epoch 2: top two stages (stage1 is 3rd from top)
    assert changed(2, stage_keys(model, -2))
    assert len(recorder.lrs) == 3 * 2  # 3 epochs x 2 batches (21 training images, batches of 8)
    for step in recorder.lrs:
        assert step["backbone"] == pytest.approx(0.1 * step["head"], rel=1e-9)
        assert step["backbone_no_decay"] == pytest.approx(0.1 * step["head"], rel=1e-9)
        assert step["head_no_decay"] == step["head"]
    heads = [s["head"] for s in recorder.lrs]
    peak = heads.index(max(heads))
    assert max(heads) == pytest.approx(1e-3) and heads[-1] < 1e-4  # warmup to lr, then cosine towards 0
    assert all(a >= b for a, b in zip(heads[peak:], heads[peak + 1 :], strict=False))


@pytest.mark.slow
def test_resume_in_the_middle_of_the_schedule_keeps_unfrozen_modules_training(folder, tmp_path):
    ckpt = L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path, save_last=True)
    fit(folder, Recorder(), 2, unfreeze_at_epoch=1, callbacks=[ckpt])  # epochs 0 (head) and 1 (all)
    before = torch.load(tmp_path / "last.ckpt", weights_only=False)["state_dict"]
    recorder = Recorder()
    model, _ = fit(folder, recorder, 3, ckpt_path=str(tmp_path / "last.ckpt"), unfreeze_at_epoch=1)
    assert recorder.grad_flags and all(recorder.grad_flags)  # Lightning's BackboneFinetuning: False (#21901)
    key = "layer4.0.conv1.weight"
    assert not torch.equal(model.backbone.state_dict()[key], before[f"backbone.{key}"])


@pytest.mark.slow
def test_finetune_command_then_embeddings_for_a_folder(folder):
    cwd = folder / "cli"
    cwd.mkdir()
    common = ["--data.image_size=32", "--data.num_workers=0", "--trainer.enable_progress_bar=false"]
    result = run_cli(
        "fit", "--experiment", "finetune", "--run.name=ft", f"--run.root={cwd / 'runs'}",
        f"--data.root={folder / 'imgs'}", f"--model.weights={folder / 'w.safetensors'}",
        "--model.backbone=resnet10t", "--trainer.max_epochs=2", "--model.bias_from_priors=true",
        "--trainer.log_every_n_steps=1", "--trainer.enable_model_summary=false", *common,
        "--finetune.wise_alphas=[0, 0.5, 1]", cwd=cwd,
    )  # fmt: skip
    run_dir = cwd / "runs" / "finetune" / "ft"
    assert last_line(result.stdout) == f"run directory: {run_dir}"
    # bn_eval (finetune.yaml) through the CLI, whose callbacks evaluate the model for a moment (FLOPs, probe):
    # the BatchNorm statistics are still the weight file's after two epochs, first epoch included.
    trained = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    pretrained = load_file(str(folder / "w.safetensors"))
    stats = [k for k in pretrained if "running_" in k]
    assert stats and all(torch.equal(trained[f"backbone.{k}"], pretrained[k]) for k in stats)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["evaluated_on"] == "test" and 0 <= summary["metrics"]["test/acc"] <= 1
    assert summary["selected_on"].startswith("15% of train") and "test/acc" in summary["last_epoch_metrics"]
    # WiSE-FT chose its blend on the selection split only, and that blend is the reported checkpoint.
    wise = summary["wise"]
    assert wise["alpha"] in (0, 0.5, 1) and set(wise["val"]) == {"0.0", "0.5", "1.0"}
    best = max(wise["val"], key=lambda a: (wise["val"][a]["score"], -wise["val"][a]["loss"], float(a)))
    # finetune.yaml's rule: the kept end (wise_keep) stays unless the best `a` beats it by the sign test.
    rule = yaml.safe_load((run_dir / "config.yaml").read_text())["finetune"]
    kept = 1.0 if rule["wise_keep"] == "finetune" else 0.0
    if float(best) != kept:
        assert wise["test"]["a"] == float(best) and wise["test"]["against"] == kept
        assert wise["alpha"] == (float(best) if wise["test"]["p"] < rule["wise_evidence_p"] else kept)
    else:
        assert wise["alpha"] == kept and "test" not in wise
    assert (
        summary["checkpoint_used"].endswith("wise.ckpt") and (run_dir / "checkpoints" / "wise.ckpt").is_file()
    )
    # Optimism at a glance: the chosen blend's selection score (what WiSE-FT chose it on) beside test's.
    chosen = wise["val"][str(float(wise["alpha"]))]["score"]
    assert summary["selection"]["value"] == pytest.approx(chosen, abs=1e-6)
    assert summary["optimism"] == pytest.approx(chosen - summary["metrics"]["test/acc"], abs=1e-6)
    probe = summary["linear_probe"]
    assert probe["optimism"] == pytest.approx(probe["val/acc"] - probe["test/acc"], abs=1e-6)
    with (run_dir / "metrics.csv").open() as f:
        rows = [r for r in csv.DictReader(f) if r.get("lr-AdamW/head")]
    assert rows and all(
        float(r["lr-AdamW/backbone"]) == pytest.approx(float(r["lr-AdamW/head"])) for r in rows
    )  # finetune.yaml: one learning rate (backbone_lr_mult 1.0), peak 3e-4
    assert max(float(r["lr-AdamW/head"]) for r in rows) == pytest.approx(3e-4)
    result = run_cli(
        "predict", "--ckpt_path", str(run_dir / "checkpoints" / "last.ckpt"),
        f"--data.predict_dir={folder / 'imgs' / 'test'}", "--data.predict_embeddings=true", *common,
        cwd=cwd,
    )  # fmt: skip
    with (run_dir / "predictions.csv").open() as f:
        predictions = list(csv.DictReader(f))
    assert len(predictions) == 9 and predictions[0]["id"].endswith(".jpg")
    saved = np.load(run_dir / "embeddings.npz")
    assert saved["embeddings"].shape == (9, 512) and list(saved["ids"]) == [p["id"] for p in predictions]


class HeadAtStart(L.Callback):
    def on_train_start(self, trainer, pl_module):
        self.weight = pl_module.head[-1].weight.detach().clone()


def test_linear_probe_head_init_and_bn_eval_keep_statistics(folder):
    recorder, start = Recorder(), HeadAtStart()
    model, initial = fit(folder, recorder, 1, callbacks=[start], head_init="linear_probe", bn_eval=True)
    assert start.weight.abs().sum() > 0  # fitted before the first step (a default head is random, not this)
    final = model.backbone.state_dict()
    stats = [k for k in final if "running_" in k]
    assert stats and all(torch.equal(final[k], initial[k]) for k in stats)  # BN statistics frozen
    assert not torch.equal(final["layer4.0.conv1.weight"], initial["layer4.0.conv1.weight"])  # weights train


@pytest.mark.slow
def test_bn_adapt_epochs_lets_statistics_adapt_then_freezes_them(folder):
    recorder = Recorder()
    model, initial = fit(folder, recorder, 2, bn_eval=True, bn_adapt_epochs=1)
    stats = [k for k in initial if "running_" in k]
    after_first, after_second = recorder.epochs
    assert any(not torch.equal(after_first[k], initial[k]) for k in stats)  # epoch 0: adapted to the data
    assert all(torch.equal(after_second[k], after_first[k]) for k in stats)  # from epoch 1: frozen
    assert not torch.equal(after_second["layer4.0.conv1.weight"], after_first["layer4.0.conv1.weight"])


def test_wise_ft_at_alpha_zero_gives_back_the_probe_model_and_picks_on_val(folder):
    recorder, start = Recorder(), HeadAtStart()
    finetune_only = {"head_init": "linear_probe", "bn_eval": True}
    model, initial = fit(folder, recorder, 1, callbacks=[start], wise_alphas=[0.0], **finetune_only)
    final = model.backbone.state_dict()
    assert all(torch.equal(final[k], initial[k]) for k in initial)  # a = 0: the pretrained backbone, exactly
    assert torch.equal(model.head[-1].weight, start.weight)  # and the probe's head
    assert (
        recorder.epochs[-1]["layer4.0.conv1.weight"].ne(initial["layer4.0.conv1.weight"]).any()
    )  # it trained

    from trainforge.training.wise import interpolate

    a, b = {"w": torch.zeros(2), "n": torch.tensor(3)}, {"w": torch.ones(2), "n": torch.tensor(5)}
    assert interpolate(a, b, 0.25)["w"].tolist() == [0.25, 0.25] and int(interpolate(a, b, 0.25)["n"]) == 5
