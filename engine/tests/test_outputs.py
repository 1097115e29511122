"""Tracking and outputs end to end: W&B offline files read back, PNGs, predict/ensemble, export, distillation."""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import FAST, REPO, run_cli
from tests.wandb_records import records
from trainforge.checkpoints import build_datamodule, load_model
from trainforge.reporting.curves import epoch_history
from trainforge.reporting.plots import confusion_figsize
from trainforge.tools.export import export
from trainforge.tools.predict import data_loader, predict_scores
from trainforge.tools.predict import run as predict
from trainforge.training.distill import Distillation

EXTRA = ["--outputs.tensorboard=true", "--wandb.watch=parameters", "--wandb.log_model=true"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("outputs")
    args = ["fit", "--run.name", "r", f"--run.root={cwd / 'runs'}", *FAST, *EXTRA]
    first = run_cli(*args, cwd=cwd)
    run_dir = cwd / "runs" / "default" / "r"
    first_wandb = sorted((run_dir / "wandb").glob("offline-run-*/run-*.wandb"))
    # Lightning 2.6 rewrites last.ckpt only when a top-k checkpoint is saved: resume starts from its step.
    resume_step = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["global_step"]
    overrides = [a for a in args if not a.startswith("--trainer.max_epochs")] + ["--trainer.max_epochs=3"]
    run_cli(*overrides, cwd=cwd)
    return cwd, run_dir, first, first_wandb, resume_step


def _history(path):
    rows = []
    for record in records(path):
        if record.WhichOneof("record_type") == "history":
            rows.append(
                {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.history.item}
            )
    return rows


@pytest.mark.slow
def test_wandb_offline_run_has_metrics_config_artifact_and_resumes_the_step(run):
    _, run_dir, _, first_files, resume_step = run
    run_id = (run_dir / "wandb_id.txt").read_text().strip()
    assert len(first_files) == 1
    first = list(records(first_files[0]))
    kinds = {r.WhichOneof("record_type") for r in first}
    assert {"run", "history", "config"} <= kinds
    assert next(r for r in first if r.WhichOneof("record_type") == "run").run.run_id == run_id
    config = {i.key: json.loads(i.value_json) for r in first if r.HasField("config") for i in r.config.update}
    assert config["config"]["model"]["init_args"]["backbone"] == "resnet10t" and config["git_commit"]
    history = _history(first_files[0])
    keys = set().union(*history)
    assert {"train/loss_step", "val/acc", "trainer/global_step"} <= keys
    assert any(k.startswith("parameters/") for k in keys), "wandb.watch histograms"
    artifacts = [r.artifact for r in first if r.WhichOneof("record_type") == "artifact"]
    assert any(a.type == "model" and "best" in a.aliases for a in artifacts), "log_model: best checkpoint"
    steps_first = [h["trainer/global_step"] for h in history if "trainer/global_step" in h]
    assert max(steps_first) == 8
    resumed = [
        p for p in sorted((run_dir / "wandb").glob("offline-run-*/run-*.wandb")) if p not in first_files
    ]
    assert len(resumed) == 1 and run_id in resumed[0].name  # same W&B run id across the resume
    steps_resumed = [h["trainer/global_step"] for h in _history(resumed[0]) if "trainer/global_step" in h]
    assert min(steps_resumed) == resume_step > 0 and max(steps_resumed) == 12  # the step continues


@pytest.mark.slow
def test_pngs_per_class_summary_and_tensorboard(run):
    _, run_dir, first, *_ = run
    sizes = {
        name: Image.open(run_dir / name).size for name in ("learning_curves.png", "confusion_matrix.png")
    }
    assert sizes["learning_curves.png"] == (1000, 400)
    assert sizes["confusion_matrix.png"] == tuple(int(s * 100) for s in confusion_figsize(10))
    with Image.open(run_dir / "misclassified.png") as grid:
        grid.load()
        assert grid.size[0] % 150 == 0 and grid.size[1] % 170 == 0
    rows = list(csv.DictReader((run_dir / "per_class.csv").open()))
    assert [r["class"] for r in rows] == [str(i) for i in range(10)]
    assert sum(int(r["support"]) for r in rows) == 270  # the digits test split
    summary = json.loads((run_dir / "summary.json").read_text())
    assert isinstance(summary["diagnosis"], list) and "diagnosis" in first.stdout
    model = json.loads((run_dir / "model_summary.json").read_text())
    assert model["params"] > 1_000_000 and model["flops_per_sample"] > 0
    history = epoch_history(run_dir / "metrics.csv")
    # Lightning's CSVLogger starts metrics.csv afresh on resume: the resumed launch's epochs (from 1 or 2).
    assert history["epoch"] and history["epoch"][-1] >= 2.0
    assert any(v == v for v in history["train_loss"]) and any(v == v for v in history["val_metric"])
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tensorboard")).Reload()
    assert "val/acc" in events.Tags()["scalars"]


@pytest.mark.slow
def test_predict_csv_matches_the_model_and_ensembles(run, tmp_path):
    _, run_dir, *_ = run
    single = predict([str(run_dir)], "test", tmp_path / "one.csv", threshold=0.99)
    twice = predict([str(run_dir), str(run_dir)], "test", tmp_path / "two.csv", weights="val")
    rows = list(csv.DictReader(single.open()))
    probs = np.array([[float(r[f"prob_{c}"]) for c in range(10)] for r in rows])
    model, config = load_model(run_dir)
    loader, ids = data_loader(build_datamodule(config, run_dir), "test")
    with torch.no_grad():
        expected = torch.cat([model(x).softmax(-1) for x, _ in loader]).numpy()
    assert [r["id"] for r in rows] == ids and np.abs(probs - expected).max() < 2e-6
    two = np.array([[float(r[f"prob_{c}"]) for c in range(10)] for r in csv.DictReader(twice.open())])
    assert np.abs(two - probs).max() < 2e-6  # an ensemble of two identical checkpoints equals one
    review = list(csv.DictReader((tmp_path / "one_review.csv").open()))
    assert len(review) == int((expected.max(-1) < 0.99).sum())
    flipped = predict_scores([model], loader, tta=True)
    with torch.no_grad():
        manual = torch.cat([(model(x).softmax(-1) + model(x.flip(-1)).softmax(-1)) / 2 for x, _ in loader])
    assert torch.allclose(flipped, manual, atol=1e-6) and not torch.allclose(
        flipped, torch.tensor(expected), atol=1e-4
    )


@pytest.mark.slow
def test_predict_on_a_folder_of_images_through_the_command(run, tmp_path):
    cwd, run_dir, *_ = run
    folder = tmp_path / "images"
    (folder / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.png", "sub/c.png"):
        Image.fromarray(rng.integers(0, 255, (16, 16), dtype=np.uint8)).save(folder / name)
    out = tmp_path / "folder.csv"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [
        sys.executable,
        "-m",
        "trainforge.tools.predict",
        str(run_dir),
        "--data",
        str(folder),
        "--out",
        str(out),
    ]
    subprocess.run([*cmd, "--tta", "flip"], check=True, cwd=cwd, env=env)
    rows = list(csv.DictReader(out.open()))
    assert [r["id"] for r in rows] == ["a.png", "b.png", "sub/c.png"]
    assert all(abs(sum(float(r[f"prob_{c}"]) for c in range(10)) - 1) < 1e-4 for r in rows)


@pytest.mark.slow
def test_export_round_trips_within_tolerance(run, tmp_path):
    _, run_dir, *_ = run
    report = export(run_dir, tmp_path, atol=1e-4)
    assert report["torchscript"]["max_abs_diff"] <= 1e-4 and report["onnx"]["max_abs_diff"] <= 1e-4
    # Self-describing: the task and the run's own preprocessing travel with the exported files.
    saved = json.loads((tmp_path / "export.json").read_text())
    assert saved["task"]["init_args"]["names"] == [str(i) for i in range(10)]
    assert saved["preprocessing"] == json.loads((run_dir / "preprocessing.json").read_text())
    scripted = torch.jit.load(str(tmp_path / "model.torchscript.pt"))
    model, _ = load_model(run_dir)
    x = torch.randn(3, 1, 16, 16)
    with torch.no_grad():
        probs = model(x).softmax(-1)  # the exports give the task's scores: probabilities
        assert torch.allclose(scripted(x), probs, atol=1e-4)  # a batch size not seen at export
    import onnx
    import onnxruntime as ort

    onnx_out = ort.InferenceSession(str(tmp_path / "model.onnx")).run(None, {"input": x.numpy()})[0]
    assert np.abs(onnx_out - probs.numpy()).max() < 1e-4
    metadata = {p.key: json.loads(p.value) for p in onnx.load(str(tmp_path / "model.onnx")).metadata_props}
    assert metadata["preprocessing"]["input_size"] == [1, 16, 16] and metadata["task"] == saved["task"]


@pytest.mark.slow
def test_distillation_from_the_run_as_teacher(run):
    cwd, run_dir, *_ = run
    args = [a for a in FAST if not a.startswith("--trainer.max_epochs")]
    run_cli(
        "fit",
        "--experiment",
        "distill",
        "--run.name",
        "student",
        f"--run.root={cwd / 'runs'}",
        f"--distill.teacher={run_dir}",
        "--mixup.mixup_alpha=0.2",  # composed with distillation (the teacher sees the mixed batch) and L1
        "--l1.weight=1e-5",
        "--model.backbone=test_resnet",
        "--trainer.max_epochs=1",
        "--wandb.enabled=false",
        "--outputs.reports=false",
        *args[1:],
        cwd=cwd,
    )
    student_dir = cwd / "runs" / "distill" / "student"
    header = (student_dir / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"train/kd_loss", "train/ce_loss", "train/l1", "val/acc"} <= set(header), header
    assert "train/acc" not in header  # mixed batches have no single label to score
    student, _ = load_model(student_dir)
    teacher, _ = load_model(run_dir)
    assert not any("teacher" in k for k in student.state_dict())
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert n(student) < n(teacher) / 5
    # The component's loss: alpha * T^2 * KL(teacher || student) + (1 - alpha) * the task loss.
    x = torch.randn(4, 1, 16, 16)
    distill = Distillation(str(run_dir), temperature=2.0, alpha=1.0)
    distill._teacher.append(teacher)
    with torch.no_grad():
        logits, t_logits = student(x), teacher(x)
    kd = torch.nn.functional.kl_div(
        (logits / 2).log_softmax(-1), (t_logits / 2).softmax(-1), reduction="batchmean"
    )
    total, terms = distill.adjust_loss(student, x, None, logits, torch.tensor(5.0))
    assert torch.allclose(total, 4 * kd) and torch.allclose(terms["kd_loss"], kd)
    assert distill.adjust_loss(teacher, x, None, t_logits, torch.tensor(5.0))[1]["kd_loss"].abs() < 1e-6


def test_metrics_csv_keeps_every_column_when_another_launch_added_one(tmp_path):
    """The run's CSV logger appends on resume; a header change rewrites the file with the union of columns,
    never dropping a value (Lightning's rewrite raised on a column it did not know)."""
    from trainforge.loggers import RunCSVLogger

    (tmp_path / "metrics.csv").write_text("epoch,step,val/acc\n0,9,0.5\n")
    logger = RunCSVLogger(save_dir=str(tmp_path), name="", version="")
    logger.log_metrics({"epoch": 1, "train/loss": 0.3}, step=19)
    logger.save()
    with (tmp_path / "metrics.csv").open() as f:  # another writer adds a column under this one's feet
        rows = list(csv.DictReader(f))
    with (tmp_path / "metrics.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[*rows[0], "extra"])
        writer.writeheader()
        writer.writerows([r | {"extra": "7"} for r in rows])
    logger.log_metrics({"epoch": 2, "val/f1": 0.9}, step=29)
    logger.save()
    with (tmp_path / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["step"] for r in rows] == ["9", "19", "29"]
    assert rows[0]["val/acc"] == "0.5" and rows[1]["train/loss"] == "0.3" and rows[2]["val/f1"] == "0.9"
    assert rows[0]["extra"] == rows[1]["extra"] == "7"
