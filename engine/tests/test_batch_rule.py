"""The batch rule (data.batch_size is the global batch), the launch line, the summary's scale fields and
plain progress lines in a log: through the CLI, on one process."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from tests.conftest import FAST, run_cli
from trainforge.data.batching import plan_batch
from trainforge.errors import ConfigError

# One full epoch (19 optimizer steps of 64 on the digits' 1,257 training samples), so steps per epoch and
# the LR schedule are the rule's, not limit_train_batches' (which counts loader batches per rank).
EPOCH = [
    *[a for a in FAST if "limit_train" not in a and "max_epochs" not in a and "progress_bar" not in a],
    "--trainer.max_epochs=1",
    "--trainer.accelerator=cpu",
    "--trainer.devices=1",
    "--wandb.enabled=false",
    "--outputs.reports=false",
]

# The summary's batch plan for data.batch_size=64 on one process: the whole batch on the one device.
ONE_PROCESS_BATCH = {"global_batch": 64, "world_size": 1, "accumulation": 1, "per_device": 64, "per_rank": 64}


def lr_curve(run: Path) -> list[tuple[int, float]]:
    """(step, learning rate) as LearningRateMonitor logged it in metrics.csv, one per optimizer step (it
    logs every loader batch, so an accumulating run repeats each step's value)."""
    with (run / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    key = next(k for k in rows[0] if k.startswith("lr-"))
    seen = {(int(r["step"]), round(float(r[key]), 10)) for r in rows if r.get(key)}
    assert len({step for step, _ in seen}) == len(seen), "two learning rates at one step"
    return sorted(seen)


def test_plan_splits_the_global_batch_and_refuses_what_does_not_divide() -> None:
    assert plan_batch(64, 2).per_device == 32
    plan = plan_batch(64, 2, 1, max_per_device=10)  # 32 per rank in micro-batches of at most 10
    assert (plan.accumulation, plan.per_device, plan.per_rank) == (4, 8, 32)
    with pytest.raises(ConfigError, match=r"data.batch_size=63 is the global batch .* use 62 or 64"):
        plan_batch(63, 2)
    with pytest.raises(ConfigError, match="data.max_batch_per_device=0"):
        plan_batch(64, 1, 1, max_per_device=0)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_accumulation_keeps_steps_and_schedule_and_the_records_say_so(tmp_path: Path) -> None:
    plain = run_cli("fit", *EPOCH, "--run.name=plain", cwd=tmp_path)
    split = run_cli("fit", *EPOCH, "--data.max_batch_per_device=16", "--run.name=split", cwd=tmp_path)
    runs = tmp_path / "runs" / "default"
    a, b = (json.loads((runs / n / "summary.json").read_text()) for n in ("plain", "split"))
    assert a["global_step"] == b["global_step"] == 19  # 1,257 samples // 64 per optimizer step
    assert a["batch"] == ONE_PROCESS_BATCH
    assert (b["batch"]["accumulation"], b["batch"]["per_device"], b["batch"]["per_rank"]) == (4, 16, 64)
    assert a["launch"] == b["launch"]
    assert a["launch"]["accelerator"] == "cpu" and a["launch"]["world_size"] == a["launch"]["nodes"] == 1
    assert a["lr"]["peak"] == b["lr"]["peak"] == 0.001  # as configured: nothing scales with world size
    assert a["lr"]["steps_per_epoch"] == b["lr"]["steps_per_epoch"] == 19
    assert lr_curve(runs / "plain") == lr_curve(runs / "split") and len(lr_curve(runs / "plain")) == 19
    assert a["segments"] == 1 and a["wall_time_s"] == a["segment_wall_s"][0] > 0
    line = next(x for x in split.stdout.splitlines() + split.stderr.splitlines() if x.startswith("launch:"))
    assert "CPU, 1 device(s) per node x 1 node(s) = world size 1" in line
    assert "batch 64 global = 16 per device x 1 rank(s) x 4 accumulation step(s)" in line
    assert "64 (1 x 4 x 16)" in split.stdout  # the end-of-run table
    # No tqdm bar in a log (stdout is a pipe here): plain lines every log_every_n_steps (1) steps instead.
    for result in (plain, split):
        assert "\r" not in result.stdout + result.stderr
    steps = [x for x in plain.stdout.splitlines() if x.startswith("epoch 1/1 batch ")]
    assert len(steps) == 19 and "step 19/19" in steps[-1] and "train/loss_step" in steps[-1]
    assert any(x.startswith("epoch 1/1 validation val/acc") for x in plain.stdout.splitlines())


def test_a_batch_that_does_not_divide_is_refused_in_one_line(tmp_path: Path) -> None:
    result = run_cli(
        "fit",
        *EPOCH,
        "--trainer.accumulate_grad_batches=2",
        "--data.batch_size=63",
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert [x for x in result.stderr.splitlines() if x.startswith("error:")] == [
        "error: data.batch_size=63 is the global batch of one optimizer step, split over 1 rank(s) x 2 "
        "accumulation step(s) = 2 equal parts; it does not divide: use 62 or 64"
    ]
    assert not (tmp_path / "runs" / "default").exists() or not any((tmp_path / "runs" / "default").iterdir())
