"""torchrun across two "nodes" on localhost with a real c10d rendezvous: two launches of `python -m
trainforge fit` (node ranks 0 and 1) are one run of world size 2; a `kill -9` of one node's launch, then a
restart of both, continues the same run from its last.ckpt.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.cluster.slurm import report
from tests.conftest import FAST
from tests.launchers import finish, start_nodes, torchrun_nodes
from tests.test_resume import _env

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(600)]

FIT = [
    "fit",
    *[a for a in FAST if "limit_train" not in a],
    "--trainer.limit_train_batches=6",
    "--trainer.accelerator=cpu",
    "--trainer.devices=1",
    "--trainer.num_nodes=2",
    "--trainer.strategy=ddp",
    "--trainer.deterministic=true",
    "--checkpoint.every_n_train_steps=3",
    "--wandb.enabled=false",
    "--trainer.callbacks+=tests.fault_helpers.RankReport",
    "--trainer.callbacks+=tests.fault_helpers.PauseAtStep",
]
PAUSE_AT = 9  # last.ckpt is written at step 9 (every 3 steps), mid-epoch 1; rank 0 then waits


def _descendants(pid: int) -> list[int]:
    """Every process below `pid` (from /proc): torchrun starts its workers in sessions of their own."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        children = parents.get(todo.pop(), [])
        found += children
        todo += children
    return found


def _kill_node(proc: subprocess.Popen) -> None:
    """kill -9 of a node's launch: the agent and every process it started."""
    for pid in [*_descendants(proc.pid), proc.pid]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.wait(timeout=30)


def test_two_node_ranks_one_run_and_a_killed_node_resumes_from_last_ckpt(tmp_path: Path) -> None:
    started = time.time()
    run = tmp_path / "runs" / "default" / "torchrun-nodes"
    first = start_nodes(
        FIT, tmp_path, _env(OMP_NUM_THREADS="1", TRAINFORGE_TEST_PAUSE_AT_STEP=str(PAUSE_AT)), c10d=True
    )
    try:
        deadline = time.time() + 300
        while not (run / "paused").exists():
            assert all(p.poll() is None for p in first), finish(first, 10, _kill_node)
            assert time.time() < deadline, "no pause within 300 s"
            time.sleep(0.2)
        _kill_node(first[1])  # node 1 is gone: its agent and its worker
        (run / "release").write_text("")  # rank 0 goes on into a collective with a dead peer
        outputs = finish(first, 120, _kill_node)
    finally:
        for proc in first:
            if proc.poll() is None:
                _kill_node(proc)
    assert first[1].returncode == -signal.SIGKILL
    assert first[0].returncode != 0, outputs[0][-3000:]  # the surviving node fails; nothing hangs
    assert not (run / "summary.json").exists()
    (run / "paused").unlink()
    (run / "release").unlink()

    # both nodes restarted, the same command on each (no pause this time)
    second = torchrun_nodes(FIT, tmp_path, _env(OMP_NUM_THREADS="1"), timeout=300, c10d=True, stop=_kill_node)
    for code, output in second:
        assert code == 0, output[-4000:]
        assert "terminate called" not in output
    log = "\n".join(output for _, output in second)
    assert f"Resuming run {run} from {run}/checkpoints/last.ckpt" in log
    resumed = int(re.search(r"rank 0 of 2 on node \S+ starts at step (\d+)", log).group(1))
    assert resumed == PAUSE_AT  # from last.ckpt, not from step 0
    ranks = [json.loads((run / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    assert ranks[0]["start_step"] == ranks[1]["start_step"] == PAUSE_AT
    assert ranks[0]["global_step"] == ranks[1]["global_step"] == 12
    assert ranks[0]["digest"] == ranks[1]["digest"]
    assert [p.name for p in (tmp_path / "runs" / "default").iterdir()] == [run.name]  # one run
    assert json.loads((run / "summary.json").read_text())["global_step"] == 12  # one summary
    assert log.count("run directory:") == 1
    report(
        f"torchrun, 2 node ranks (c10d): node 1 killed (kill -9) at step {PAUSE_AT}, both restarted: resumed "
        f"from step {resumed}, final step 12, {time.time() - started:.0f} s in all"
    )
