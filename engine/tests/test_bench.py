"""`python -m trainforge bench` end to end (a few steps: fields and last line, never a timing), the data
loader bottleneck warning, and the "auto" worker count."""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch.callbacks import TQDMProgressBar

from tests.conftest import last_line, run_cli
from trainforge.data.workers import auto_num_workers
from trainforge.tools.bench import parse_args
from trainforge.tools.timing import StepTimer, _timed_batches
from trainforge.training.progress import LineProgress, TimedProgressBar, default_progress_bar
from trainforge.training.throughput import DataBottleneckWarning

TINY = ["--model", "resnet10t", "--image-size", "16", "--batch-size", "4", "--num-workers", "0"]


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, dict]:
    tmp = tmp_path_factory.mktemp("bench")
    out = tmp / "result.json"
    # 2 batches an epoch: the 3 steps of each loop span epochs, A validating in between
    small = '{"num_samples": 8, "eval_samples": 4}'
    result = run_cli(
        "bench", *TINY, "--steps", "2", "--warmup", "1", "--pairs", "1", "--data-args", small, "--out", str(out),
        cwd=tmp,
    )  # fmt: skip
    return out, result.stdout, json.loads(out.read_text())


@pytest.mark.slow
def test_bench_writes_the_json_and_names_it_last(bench: tuple[Path, str, dict]) -> None:
    out, stdout, result = bench
    assert last_line(stdout) == f"bench result: {out.resolve()}"
    for key in ("template_imgs_per_s", "raw_imgs_per_s", "loader_imgs_per_s", "ratio_median"):
        assert result[key] > 0, key
    assert len(result["ratios"]) == 1 and len(result["template_step_ms"]) == len(result["raw_step_ms"]) == 1
    assert result["ratio_min"] <= result["ratio_median"] <= result["ratio_max"]
    assert result["template_peak_rss_mb"] > 0 and result["raw_peak_rss_mb"] > 0
    assert result["config"]["model"] == "resnet10t" and result["config"]["steps"] == 2
    assert "A/B step-time ratio" in stdout


@pytest.mark.slow
def test_bench_runs_the_full_fit_path_with_default_loggers(bench: tuple[Path, str, dict]) -> None:
    out = bench[0]
    run = out.with_suffix("") / "runs" / "bench" / "A0"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["global_step"] == 3  # warm-up + timed steps, through `python -m trainforge fit`
    assert summary["epoch"] >= 1  # several epochs: `max_epochs` does not cut a short data set's bench
    assert (run / "metrics.csv").is_file() and (run / "wandb").is_dir()
    assert (run / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.slow
def test_bench_again_into_the_same_file_measures_afresh(bench: tuple[Path, str, dict]) -> None:
    out = bench[0]
    result = run_cli(
        "bench", *TINY, "--steps", "1", "--warmup", "1", "--pairs", "1", "--out", str(out), cwd=out.parent
    )
    assert last_line(result.stdout) == f"bench result: {out.resolve()}"
    runs = out.with_suffix("") / "runs" / "bench"
    assert json.loads((runs / "A0" / "summary.json").read_text())["global_step"] == 2  # not resumed at 3
    assert len(list(runs.iterdir())) == 2  # the earlier A0 kept, renamed


def test_step_timer_leaves_out_validation(tmp_path: Path) -> None:
    timer = StepTimer(str(tmp_path / "t.json"), warmup=1, steps=2)
    module = SimpleNamespace(device=torch.device("cpu"))
    timer.on_train_batch_end(None, module)  # type: ignore[arg-type]  # warm-up done: the clock starts
    time.sleep(0.02)
    timer.on_validation_start(None, module)  # type: ignore[arg-type]
    time.sleep(0.5)  # evaluation and checkpointing: not a training step
    timer.on_train_epoch_start(None, module)  # type: ignore[arg-type]
    timer.on_train_batch_end(None, module)  # type: ignore[arg-type]
    time.sleep(0.02)
    timer.on_train_batch_end(None, module)  # type: ignore[arg-type]
    seconds = json.loads((tmp_path / "t.json").read_text())["seconds"]
    assert 0.04 <= seconds < 0.3


def test_raw_loop_cycles_epochs_of_a_short_loader() -> None:
    loader = [(torch.zeros(2, 3), torch.zeros(2))] * 2  # two batches an epoch
    calls: list[int] = []
    timing = _timed_batches(loader, torch.device("cpu"), warmup=2, steps=3, step=lambda x, y: calls.append(1))
    assert len(calls) == 5 and timing.seconds >= 0
    with pytest.raises(ValueError, match="no batch"):
        _timed_batches([], torch.device("cpu"), warmup=1, steps=1, step=lambda x, y: None)


def test_bench_rejects_bad_options() -> None:
    with pytest.raises(SystemExit):
        parse_args(["--data-args", "{not json"])
    with pytest.raises(SystemExit):
        parse_args(["--steps", "0"])


def test_fit_args_may_start_with_dashes() -> None:
    assert parse_args(["--fit-args", "--wandb.enabled=false"]).fit_args == "--wandb.enabled=false"
    assert parse_args(["--fit-args=--a=1 --b=2", "--steps", "3"]).fit_args == "--a=1 --b=2"


@pytest.mark.slow
def test_slow_loader_warns_once_in_one_line(tmp_path: Path) -> None:
    result = run_cli(
        "fit",
        "--data=trainforge.data.synthetic.SyntheticDataModule",
        "--data.init_args.image_size=16",
        "--data.init_args.num_samples=32",
        "--data.init_args.eval_samples=4",
        "--data.init_args.batch_size=4",
        "--data.init_args.num_workers=0",
        "--data.init_args.load_delay_s=0.25",  # 1 s of "decoding" per batch of 4
        "--model.backbone=resnet10t",
        "--trainer.max_epochs=1",
        "--trainer.limit_val_batches=1",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        "--data_monitor.window=3",
        "--wandb.enabled=false",
        f"--run.root={tmp_path}",
        cwd=tmp_path,
    )
    lines = [line for line in result.stderr.splitlines() if "data loader is the bottleneck" in line]
    assert len(lines) == 1, result.stderr[-3000:]
    assert "workers" in lines[0] and "cache" in lines[0] and "pinned memory" in lines[0]


def _drive(callback: DataBottleneckWarning, wait_s: float, steps: int) -> None:
    callback.on_train_epoch_start(None, None)  # type: ignore[arg-type]
    for i in range(steps):
        time.sleep(wait_s)
        callback.on_train_batch_start(None, None, None, i)  # type: ignore[arg-type]
        time.sleep(0.002)
        callback.on_train_batch_end(None, None, None, None, i)  # type: ignore[arg-type]


def test_bottleneck_share_is_measured_and_can_be_turned_off() -> None:
    slow = DataBottleneckWarning(threshold=0.5, window=3)
    with pytest.warns(UserWarning, match="data loader is the bottleneck"):
        _drive(slow, wait_s=0.03, steps=4)
    assert slow.warned and slow.last_share is not None and slow.last_share > 0.5
    off = DataBottleneckWarning(threshold=0.5, window=3, enabled=False)
    _drive(off, wait_s=0.03, steps=4)
    assert not off.warned and off.last_share is None
    with pytest.raises(ValueError, match="threshold"):
        DataBottleneckWarning(threshold=1.5)


@pytest.mark.parametrize(("cores", "workers"), [(1, 0), (2, 1), (5, 4), (64, 16)])
def test_auto_workers_leave_a_core_to_training(cores: int, workers: int) -> None:
    assert auto_num_workers(cores) == workers


def test_default_progress_bar_respects_the_users_choice() -> None:
    assert isinstance(default_progress_bar({}, interactive=True), TimedProgressBar)
    assert isinstance(default_progress_bar({}, interactive=False), LineProgress)  # a log file: plain lines
    assert default_progress_bar({"enable_progress_bar": False}) is None
    assert default_progress_bar({"callbacks": [TQDMProgressBar(refresh_rate=5)]}) is None


@pytest.mark.slow
def test_bench_finetune_runs_both_loops_side_by_side(tmp_path: Path) -> None:
    """`make bench-finetune`: the naive loop and `fit --experiment finetune` on one folder, both timed per
    epoch, both loading the same weights file; accuracies and epoch times land in the JSON."""
    from tests.transfer_helpers import make_folder, save_timm_weights

    data = make_folder(tmp_path / "imgs", {"train": 8, "test": 3})
    weights = tmp_path / "w.safetensors"
    save_timm_weights(weights)
    out = tmp_path / "ft.json"
    result = run_cli(
        "--data", str(data), "--weights", str(weights), "--model", "resnet10t", "--image-size", "32",
        "--epochs", "2", "--batch-size", "8", "--workers", "0", "--out", str(out),
        "--fit-args", "--trainer.max_epochs=2 --trainer.enable_progress_bar=false --data.num_workers=0",
        cwd=tmp_path, module="trainforge.tools.bench_finetune",
    )  # fmt: skip
    assert last_line(result.stdout) == f"bench result: {out.resolve()}"
    record = json.loads(out.read_text())
    naive, template = record["naive"], record["template"]
    assert len(naive["epoch_s"]) == 2 and len(naive["accs"]) == 2 and naive["evaluated_on"] == "test"
    assert naive["train_images_per_epoch"] == 24 and naive["eval_images_per_epoch"] == 9
    assert len(template["epoch_s"]) == 2 and all(s > 0 for s in template["epoch_s"] + naive["epoch_s"])
    assert template["before_first_epoch_s"] > 0 and template["evaluated_on"] == "test"
    assert 0.0 <= template["acc"] <= 1.0 and record["epoch_time_ratio"] > 0
    assert "loaded" in result.stderr + result.stdout  # the template loaded the weights file too
    config = (Path(template["run_dir"]) / "config.yaml").read_text()
    assert f"weights: {weights}" in config and "backbone: resnet10t" in config
