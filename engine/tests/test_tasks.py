"""Task kinds: one declaration read by the loss, metrics, reports, predictions and export; features that
cannot serve a task or a backbone refuse in one line at start-up."""

from __future__ import annotations

import csv
import json

import pytest
import torch
import yaml

from tests.conftest import FAST, last_line, run_cli
from tests.transfer_helpers import draw
from trainforge.errors import TemplateError
from trainforge.tasks import Binary, Multiclass, Multilabel, Regression, task_from_config

QUICK = [
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
    "--wandb.enabled=false",
]


def test_each_kind_scores_predicts_and_round_trips_through_its_config():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 3.0, 0.0]])
    multi = Multiclass(["a", "b", "c"])
    assert multi.prediction_rows(multi.scores(logits))[1][:2] == ["1", "b"]
    binary = Binary(["no", "yes"])
    assert (
        binary.num_outputs == 1
        and binary.prediction_rows(binary.scores(torch.tensor([[2.0], [-2.0]])))[1][1] == "no"
    )
    labels = Multilabel(["x", "y", "z"])
    assert labels.prediction_rows(labels.scores(torch.tensor([[3.0, -3.0, 3.0]])))[0][0] == "x;z"
    reg = Regression(["price"], mean=[100.0], std=[10.0])
    assert reg.scores(torch.tensor([[0.5], [-1.0]])).tolist() == [105.0, 90.0]  # the targets' own units
    # The loss sees standardised targets: an output of 0.5 for a target of 105 is exact.
    assert reg.build_loss()(torch.tensor([[0.5]]), torch.tensor([105.0])).item() == pytest.approx(0.0)
    for task in (multi, binary, labels, reg):
        assert task_from_config(task.to_config()) == task
    with pytest.raises(TemplateError, match="at least 2 classes"):
        Multiclass(["only"])
    with pytest.raises(TemplateError, match="regression task needs float targets"):
        reg.check_targets(torch.tensor([1, 2]), "the train split")
    with pytest.raises(TemplateError, match="label 7 .* outside 0..2"):
        multi.check_targets(torch.tensor([0, 7]), "the val split")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--model.class_weights=balanced"],
            "model.class_weights applies to classification tasks, not to regression",
        ),
        (["--data.sampler=balanced"], "data.sampler=balanced: balanced sampling needs one class per sample"),
        (
            ["--mixup.mixup_alpha=0.2"],
            "mixup: mixed targets are class probabilities, and this is a regression task",
        ),
        (["--model.label_smoothing=0.1"], "model.label_smoothing applies to classification tasks"),
        (
            ["--finetune.head_init=linear_probe"],
            "finetune.head_init=linear_probe: it fits a linear classifier head",
        ),
        (
            ["--checkpoint.monitor=val/acc"],
            "checkpoint.monitor=val/acc: a regression task logs val/loss, val/mae",
        ),
    ],
)
def test_features_that_cannot_serve_a_regression_refuse_at_start_up(refused, tmp_path, args, message):
    code, err = refused(
        "fit",
        "--data=tests.task_modules.TinyRegression",
        "--model=tests.task_modules.VectorModel",
        *QUICK,
        *args,
    )
    assert code == 2 and message in err, err[-2000:]
    assert "Traceback" not in err and not list((tmp_path / "runs").rglob("*.ckpt"))


@pytest.mark.parametrize(
    ("model", "args", "message"),
    [
        (
            "TorchvisionModel",
            ["--finetune.freeze_stages=2"],
            "finetune.freeze_stages: the backbone (ResNet) declares no stages",
        ),
        (
            "TorchvisionModel",
            ["--model.layer_decay=0.7"],
            "model.layer_decay=0.7: the backbone (ResNet) declares no stages",
        ),
        ("NoWidthModel", [], "returned a Sequential without an integer `num_features`"),
    ],
)
def test_own_backbone_features_refuse_clearly(refused, tmp_path, model, args, message):
    code, err = refused("fit", f"--model=tests.task_modules.{model}", *FAST, *QUICK, *args)
    assert code == 2 and message in err, err[-2000:]
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("*.ckpt"))


@pytest.mark.slow
def test_own_backbone_trains_frozen_with_weights_and_refuses_image_size_from_it(tmp_path):
    from tests.task_modules import TorchvisionModel

    source = TorchvisionModel(num_classes=10, in_chans=1)
    source.configure_model()
    torch.save(source.backbone.state_dict(), tmp_path / "own.pth")
    result = run_cli(
        "fit", "--model=tests.task_modules.TorchvisionModel", f"--model.weights={tmp_path / 'own.pth'}",
        "--finetune.freeze_backbone=true", "--run.name=own", f"--run.root={tmp_path / 'runs'}", *FAST, *QUICK,
        cwd=tmp_path,
    )  # fmt: skip
    run_dir = tmp_path / "runs" / "default" / "own"
    assert last_line(result.stdout) == f"run directory: {run_dir}"
    trained = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    # model.weights reached the module of one's own; freeze_backbone kept it exactly so.
    assert all(torch.equal(trained[f"backbone.{k}"], v) for k, v in source.backbone.state_dict().items())
    folder = tmp_path / "imgs"
    for split in ("train", "test"):
        for name in ("circle", "square"):
            (folder / split / name).mkdir(parents=True)
            for i in range(3):
                draw(name, i).save(folder / split / name / f"{i}.jpg")
    result = run_cli(
        "fit", "--data=trainforge.data.image_folder.ImageFolderDataModule", f"--data.root={folder}",
        "--model=tests.task_modules.TorchvisionModel", f"--run.root={tmp_path / 'runs'}", *QUICK,
        cwd=tmp_path, check=False,
    )  # fmt: skip
    assert result.returncode == 2 and "data.image_size: null takes the input size" in result.stderr
    assert "set data.image_size (e.g. 224)" in result.stderr


@pytest.mark.slow
def test_binary_task_through_the_cli_logs_auroc_and_predicts_one_probability(tmp_path):
    result = run_cli(
        "fit", "--data=tests.task_modules.TinyBinary", "--model=tests.task_modules.VectorModel",
        "--trainer.max_epochs=5", "--model.lr=0.01", "--run.name=bin", f"--run.root={tmp_path / 'runs'}", *QUICK, cwd=tmp_path,
    )  # fmt: skip
    run_dir = tmp_path / "runs" / "default" / "bin"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["task"] == "binary (2 classes)" and summary["metrics"]["test/auroc"] > 0.8, result.stdout[
        -2000:
    ]
    run_cli("predict", "--ckpt_path", str(run_dir / "checkpoints" / "last.ckpt"), cwd=tmp_path)
    with (run_dir / "predictions.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 40 and set(rows[0]) == {"id", "pred", "pred_name", "prob_high"}


def test_multilabel_from_csv_to_predictions(tmp_path):
    folder = tmp_path / "tags"
    folder.mkdir()
    tags = {"circle": "round", "square": "boxy", "stripes": "boxy;striped"}
    lines = {"train": [], "test": []}
    for split, count in (("train", 10), ("test", 4)):
        for kind, labels in tags.items():
            for i in range(count):
                name = f"{split}-{kind}-{i}.jpg"
                draw(kind, hash((split, kind, i)) % 10_000).save(folder / name)
                lines[split].append(f"{name},{labels}")
    for split, rows in lines.items():
        (folder / f"{split}.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    result = run_cli(
        "fit", "--experiment", "multilabel", f"--data.train_list={folder / 'train.csv'}",
        f"--data.test_list={folder / 'test.csv'}", "--data.image_size=32", "--data.num_workers=0",
        "--model.backbone=resnet10t", "--trainer.max_epochs=2", "--run.name=tags", f"--run.root={tmp_path / 'runs'}",
        "--finetune.head_init=linear_probe", "--finetune.probe_c=[0.1, 1.0]",
        *QUICK, cwd=tmp_path,
    )  # fmt: skip
    run_dir = tmp_path / "runs" / "multilabel" / "tags"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["task"] == "multilabel (3 labels)" and {"test/acc", "test/f1"} <= set(summary["metrics"])
    # The head started as a sigmoid (BCE) linear probe, its C chosen on the selection split.
    probe = summary["linear_probe"]
    assert (
        probe["c"] in (0.1, 1.0) and probe["selected_on"] == "val" and {"val/acc", "test/acc"} <= set(probe)
    )
    with (run_dir / "per_label.csv").open() as f:
        assert [r["label"] for r in csv.DictReader(f)] == ["boxy", "round", "striped"]
    assert (run_dir / "misclassified.png").is_file() and last_line(result.stdout).startswith("run directory")
    run_cli("infer", str(run_dir), "--data", "test", cwd=tmp_path)
    with (run_dir / "predictions_test_single.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 12 and set(rows[0]) == {"id", "labels", "prob_boxy", "prob_round", "prob_striped"}
    for row in rows:  # a sigmoid per label, thresholded at 0.5: the label set follows the probabilities
        chosen = {n for n in ("boxy", "round", "striped") if float(row[f"prob_{n}"]) >= 0.5}
        assert set(filter(None, row["labels"].split(";"))) == chosen


@pytest.mark.slow
def test_a_task_kind_of_ones_own_trains_predicts_and_gets_no_pictures(tmp_path):
    result = run_cli(
        "fit", "--data=tests.task_modules.TinyCounts", "--model=tests.task_modules.VectorModel",
        "--trainer.max_epochs=2", "--run.name=counts", f"--run.root={tmp_path / 'runs'}", *QUICK, cwd=tmp_path,
    )  # fmt: skip
    run_dir = tmp_path / "runs" / "default" / "counts"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["task"] == "counts (1 rates)" and summary["monitor"] == {"key": "val/mae", "mode": "min"}
    assert (
        "test/mae" in summary["metrics"] and "no pictures for a counts task" in result.stderr + result.stdout
    )
    run_cli("infer", str(run_dir), "--data", "test", cwd=tmp_path)
    with (run_dir / "predictions_test_single.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 40 and all(float(r["rate"]) > 0 for r in rows)


@pytest.mark.slow
def test_without_a_test_split_the_pictures_come_from_validation(tmp_path):
    run_cli(
        "fit", "--data=tests.task_modules.NoTestBinary", "--model=tests.task_modules.VectorModel",
        "--trainer.max_epochs=1", "--run.name=nt", f"--run.root={tmp_path / 'runs'}", *QUICK, cwd=tmp_path,
    )  # fmt: skip
    run_dir = tmp_path / "runs" / "default" / "nt"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["evaluated_on"] == "val (no test split)" and "val/acc" in summary["last_epoch_metrics"]
    assert (run_dir / "confusion_matrix.png").is_file() and (run_dir / "per_class.csv").is_file()


def test_an_experiment_switching_the_data_class_starts_from_that_class_defaults(tmp_path):
    experiment = tmp_path / "mine.yaml"
    experiment.write_text("data:\n  class_path: tests.task_modules.TinyRegression\n")
    result = run_cli("fit", "--config", str(experiment), "--print_config", cwd=tmp_path)
    data = yaml.safe_load(result.stdout)["data"]
    # The base config's digits set batch_size 64 and image_size 32; neither leaks into another class.
    assert data["class_path"] == "tests.task_modules.TinyRegression" and data["init_args"]["batch_size"] == 16
    assert "image_size" not in data["init_args"]
