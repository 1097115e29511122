"""Streaming shards through the CLI under faults and distribution (slow tier): kill -9 mid-epoch and rerun
(0 and 2 loader workers), 2 DDP processes, 2 "nodes" under torchrun. Each rank records the sample ids it
trained on (tests.streaming_helpers.SampleIds): every sample once per epoch, equal batch counts per rank."""

from __future__ import annotations

import signal
from collections import defaultdict
from pathlib import Path

import pytest

from tests.conftest import FAST, run_cli
from tests.launchers import torchrun_nodes
from tests.streaming_helpers import digits_folder, read_ids, write_shards
from tests.test_resume import _env, _start, _wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
TRAIN = 128


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("streaming-dist")
    write_shards(digits_folder(root / "digits"), str(root / "shards"))
    return root / "shards"


def fit_args(shards: Path, *extra: str) -> list[str]:
    fast = [a for a in FAST if "limit_train_batches" not in a]  # whole epochs: every sample counts
    return [
        "fit", "--experiment", "streaming", f"--data.uri={shards}", *fast, "--data.batch_size=16",
        "--trainer.accelerator=cpu", "--wandb.enabled=false",
        "--trainer.callbacks+=tests.streaming_helpers.SampleIds", *extra,
    ]  # fmt: skip


def by_epoch(run: Path, ranks: int) -> dict[int, dict[int, list[list[int]]]]:
    """epoch -> rank -> the batches of ids it trained on (in order)."""
    epochs: dict[int, dict[int, list[list[int]]]] = defaultdict(lambda: defaultdict(list))
    for rank in range(ranks):
        for line in read_ids(run, rank):
            epochs[line["epoch"]][rank].append(line["ids"])
    return epochs


def assert_exactly_once(run: Path, ranks: int, epochs: int) -> None:
    seen = by_epoch(run, ranks)
    assert sorted(seen) == list(range(epochs))
    for epoch, per_rank in seen.items():
        ids = sorted(i for batches in per_rank.values() for batch in batches for i in batch)
        assert ids == list(range(TRAIN)), f"epoch {epoch}"  # each sample once across all ranks
        assert (
            len({len(batches) for batches in per_rank.values()}) == 1 and len(per_rank) == ranks
        )  # no waiting


@pytest.mark.parametrize("workers", [0, 2])
def test_kill_mid_epoch_then_rerun_sees_exactly_the_unseen_samples(
    shards: Path, tmp_path: Path, workers: int
) -> None:
    args = fit_args(
        shards, "--trainer.devices=1", f"--data.num_workers={workers}", "--checkpoint.every_n_train_steps=3",
        "--run.name=killed", "--trainer.callbacks+=tests.fault_helpers.PauseAtStep",
    )  # fmt: skip
    run = tmp_path / "runs" / "streaming" / "killed"
    proc = _start(args, tmp_path, TRAINFORGE_TEST_PAUSE_AT_STEP="3")
    _wait_for(run / "paused", proc, timeout=400)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    before = read_ids(run)
    assert [line["batch"] for line in before] == [0, 1, 2]  # killed after step 3's checkpoint, mid-epoch
    resumed = run_cli(*args, cwd=tmp_path, timeout=500)  # the same command
    assert f"Resuming run {run}" in resumed.stdout + resumed.stderr
    after = read_ids(run)[3:]
    assert [line["batch"] for line in after if line["epoch"] == 0] == [3, 4, 5, 6, 7]
    assert_exactly_once(run, ranks=1, epochs=2)  # epoch 0 over both processes, epoch 1 after the resume


def test_two_ddp_processes_each_sample_once(shards: Path, tmp_path: Path) -> None:
    run_cli(
        *fit_args(shards, "--trainer.devices=2", "--trainer.strategy=ddp", "--data.num_workers=1", "--run.name=ddp"),
        cwd=tmp_path, timeout=600,
    )  # fmt: skip
    assert_exactly_once(tmp_path / "runs" / "streaming" / "ddp", ranks=2, epochs=2)


def test_two_nodes_under_torchrun_each_sample_once(shards: Path, tmp_path: Path) -> None:
    fit = fit_args(shards, "--trainer.devices=1", "--trainer.num_nodes=2", "--trainer.strategy=ddp",
                   "--data.num_workers=1", "--run.name=nodes")  # fmt: skip
    for code, output in torchrun_nodes(fit, tmp_path, _env(), timeout=600):
        assert code == 0, output[-4000:]
    assert_exactly_once(tmp_path / "runs" / "streaming" / "nodes", ranks=2, epochs=2)
