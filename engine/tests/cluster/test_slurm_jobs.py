"""slurm/train.sbatch on a real 2-node SLURM cluster (scripts/slurm_local.sh), CPU only:
a 2-node job is one run of world size 2; a preempted job saves, requeues itself and resumes to the same end
as an uninterrupted one; a job array runs a sweep; bad allocations stop before training, in one line.

The jobs are submitted together (the cluster runs them side by side) and checked one by one.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from tests.cluster.slurm import (
    ONE_CPU_NODE,
    TWO_CPU_NODES,
    Job,
    LocalSlurm,
    job_env,
    report,
)

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(900)]

# The default experiment, small: 2 epochs x 6 steps of resnet10t on 16 px digits, deterministic.
SMALL = [
    "--model.backbone=resnet10t",
    "--model.lr=0.01",
    "--model.warmup_epochs=0",
    "--data.image_size=16",
    "--trainer.max_epochs=2",
    "--trainer.limit_train_batches=6",
    "--trainer.limit_val_batches=2",
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
    "--trainer.deterministic=true",
    "--trainer.log_every_n_steps=2",
    "--trainer.callbacks+=tests.fault_helpers.RankReport",
    "--trainer.callbacks+=tests.fault_helpers.PauseAtStep",
]
PAUSE_AT = 8  # the preempted job pauses before step 9 (epoch 1, its third batch) until it is signalled
LRS = ("0.003", "0.01", "0.03")


@dataclass
class Jobs:
    reference: Job
    preempted: Job
    array: Job
    too_many_tasks: Job
    wrong_nodes: Job


@pytest.fixture(scope="module")
def jobs(slurm: LocalSlurm, tmp_path_factory: pytest.TempPathFactory) -> Jobs:
    def folder(name: str) -> Path:
        return tmp_path_factory.mktemp(name)

    preempted = slurm.sbatch(
        *TWO_CPU_NODES,
        args=SMALL,
        cwd=folder("preempted"),
        env=job_env(TRAINFORGE_TEST_PAUSE_AT_STEP=str(PAUSE_AT)),
    )
    reference = slurm.sbatch(*TWO_CPU_NODES, args=SMALL, cwd=folder("reference"))
    sweep = folder("sweep")
    (sweep / "lrs.txt").write_text("".join(f"--model.lr={lr}\n" for lr in LRS))
    array = slurm.sbatch(
        *ONE_CPU_NODE,
        "--array=0-2",
        "--output=slurm-%A_%a.out",
        args=[*SMALL, "--trainer.max_epochs=1", "--trainer.limit_train_batches=3"],
        cwd=sweep,
        env=job_env(ARRAY_ARGS=str(sweep / "lrs.txt")),
    )
    too_many_tasks = slurm.sbatch(
        "--nodes=1",
        "--ntasks-per-node=2",
        *[o for o in ONE_CPU_NODE if not o.startswith(("--nodes", "--ntasks"))],
        args=[*SMALL, "--trainer.devices=1"],
        cwd=folder("too-many-tasks"),
    )
    wrong_nodes = slurm.sbatch(*TWO_CPU_NODES, args=[*SMALL, "--trainer.num_nodes=3"], cwd=folder("nodes"))
    return Jobs(reference, preempted, array, too_many_tasks, wrong_nodes)


def _run(job: Job) -> Path:
    runs = job.runs()
    assert len(runs) == 1, f"one run directory per job, found {runs}"
    return runs[0]


def _summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


def _ranks(run: Path) -> list[dict]:
    return [json.loads((run / f"rank{r}.json").read_text()) for r in (0, 1)]


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"]


def _completed(slurm: LocalSlurm, job: Job, history: list | None = None) -> dict[str, str]:
    state = slurm.wait(job, history=history)
    assert (state["JobState"], state["ExitCode"]) == ("COMPLETED", "0:0"), job.log_text()[-6000:]
    return state


def test_preempted_job_saves_requeues_itself_and_resumes_to_the_same_end(
    slurm: LocalSlurm, jobs: Jobs
) -> None:
    job = jobs.preempted
    run = job.cwd / "runs" / "default" / f"slurm-{job.id}"
    slurm.wait_for_file(run / "paused", job)  # rank 0 before step 9, mid-epoch 1
    slurm.signal(job, "USR1")  # what --signal=USR1@<s> sends before the time limit
    time.sleep(2)  # let the signal reach the tasks before rank 0 goes on
    (run / "release").write_text("")
    history: list = []
    state = _completed(slurm, job, history)
    log = job.log_text()

    saved = int(re.search(r"Preemption: got SIGUSR1; saving .*last\.ckpt at step (\d+)", log).group(1))
    assert PAUSE_AT < saved < 12, log[-4000:]  # mid-epoch 1 (steps 7..12)
    assert f"Preemption: requeueing SLURM job {job.id}" in log
    assert state["Restarts"] == "1"
    assert re.search(rf"job {job.id}, restart 0: 2 nodes x 1 CPU processes per node \(cpu, gloo\)", log)
    assert re.search(rf"job {job.id}, restart 1: 2 nodes x 1 CPU processes per node \(cpu, gloo\)", log)
    assert f"Resuming run {run} from {run}/checkpoints/last.ckpt" in log
    resumed = [int(s) for s in re.findall(r"rank 0 of 2 on node n1 starts at step (\d+)", log)]
    assert resumed == [0, saved], log[-4000:]  # the second segment starts where the first saved
    rank0, rank1 = _ranks(run)
    assert rank0["start_step"] == rank1["start_step"] == saved

    reference_state = _completed(slurm, jobs.reference)
    ref_run = _run(jobs.reference)
    ours, ref = _summary(run), _summary(ref_run)
    assert ours["global_step"] == ref["global_step"] == 12
    assert ours["metrics"]["test/acc"] == pytest.approx(ref["metrics"]["test/acc"], abs=1e-6)
    mine, theirs = _weights(run), _weights(ref_run)
    assert mine.keys() == theirs.keys()
    diff = max((mine[k].float() - theirs[k].float()).abs().max().item() for k in mine)
    assert diff <= 1e-5, diff

    # One run: one directory, one summary.json, one W&B run (two offline segments of the same id).
    assert _run(job) == run and list(run.rglob("summary.json")) == [run / "summary.json"]
    wandb_id = (run / "wandb_id.txt").read_text().strip()
    segments = sorted((run / "wandb").glob("offline-run-*"))
    assert len(segments) == 2 and all(s.name.endswith(wandb_id) for s in segments), segments
    assert not list(run.glob("wandb_id.txt.*"))
    assert "Traceback" not in log, log[-6000:]

    pending = [t for t, st, reason, _ in history if st == "PENDING" and reason == "BeginTime"]
    restarted = [t for t, st, _, restarts in history if st == "RUNNING" and restarts == "1"]
    waited = (
        f"{restarted[0] - pending[0]:.0f} s in BeginTime" if pending and restarted else "BeginTime not seen"
    )
    report(
        f"preempted job {job.id}: restart count {state['Restarts']}, saved at step {saved}, resumed from step "
        f"{resumed[-1]}, final step {ours['global_step']}, test/acc {ours['metrics']['test/acc']:.6f}, "
        f"{state['RunTime']} run time + {waited}, {time.time() - job.submitted:.0f} s from submission"
    )
    report(
        f"uninterrupted job {jobs.reference.id}: restart count {reference_state['Restarts']}, final step "
        f"{ref['global_step']}, test/acc {ref['metrics']['test/acc']:.6f}, {reference_state['RunTime']} run "
        f"time; max |weight difference| {diff:.3g}"
    )


def test_two_node_job_is_one_run_of_world_size_two(slurm: LocalSlurm, jobs: Jobs) -> None:
    job = jobs.reference
    _completed(slurm, job)
    log = job.log_text()
    assert re.search(r"restart 0: 2 nodes x 1 CPU processes per node \(cpu, gloo\) on n\[1-2\]", log), log[
        :2000
    ]
    assert "rank 0 of 2 on node n1 starts at step 0" in log
    assert "rank 1 of 2 on node n2 starts at step 0" in log
    run = _run(job)
    assert run.name == f"slurm-{job.id}"
    rank0, rank1 = _ranks(run)
    assert rank0["world_size"] == rank1["world_size"] == 2
    assert rank0["digest"] == rank1["digest"]  # the same weights on both nodes
    assert _summary(run)["global_step"] == 12
    assert log.count("run directory:") == 1  # one summary, printed by rank 0
    assert len(list((run / "wandb").glob("offline-run-*"))) == 1
    assert "wandb_id.txt." not in log and "Traceback" not in log, log[-4000:]


def test_job_array_runs_a_sweep_one_run_per_task(slurm: LocalSlurm, jobs: Jobs) -> None:
    started = jobs.array.submitted
    tasks = [Job(jobs.array.id, jobs.array.cwd, started, array_task=task) for task in range(3)]
    for task in tasks:
        _completed(slurm, task)
    runs = jobs.array.runs()
    assert [r.name for r in runs] == [f"slurm-{jobs.array.id}-{t}" for t in range(3)]
    lrs = []
    for run, task in zip(runs, tasks, strict=True):
        config = (run / "config.yaml").read_text()
        lrs.append(re.search(r"^\s+lr: ([0-9.e-]+)$", config, re.M).group(1))
        assert _summary(run)["global_step"] == 3
        assert f"(array task {task.array_task})" in task.log_text()
    assert [float(lr) for lr in lrs] == [float(lr) for lr in LRS]
    report(
        f"job array {jobs.array.id}: 3 runs, lr {', '.join(lrs)}, {time.time() - started:.0f} s from submission"
    )


def _refused(slurm: LocalSlurm, job: Job, message: str) -> str:
    state = slurm.wait(job)
    log = job.log_text()
    # Every task exits 2; srun may end a slower one first (exit 143), but one prints the line.
    assert state["JobState"] == "FAILED", (state, log[-3000:])
    assert re.search(message, log), log[-3000:]
    assert "Traceback" not in log, log[-3000:]
    assert job.runs() == [], "refused before anything was written"
    return next(line for line in log.splitlines() if line.startswith("error:"))


def test_more_tasks_per_node_than_devices_is_refused_in_one_line(slurm: LocalSlurm, jobs: Jobs) -> None:
    line = _refused(
        slurm, jobs.too_many_tasks, r"error: more tasks per node than devices: SLURM starts 2 tasks per node"
    )
    report(f"refused: {line}")


def test_nodes_disagreeing_with_num_nodes_is_refused_in_one_line(slurm: LocalSlurm, jobs: Jobs) -> None:
    line = _refused(slurm, jobs.wrong_nodes, r"error: --trainer.num_nodes=3 but the SLURM job has 2 nodes")
    report(f"refused: {line}")


def test_new_job_on_a_finished_run_is_refused_and_the_run_kept(slurm: LocalSlurm, jobs: Jobs) -> None:
    _completed(slurm, jobs.reference)
    run = _run(jobs.reference)
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()}
    job = slurm.sbatch(
        *ONE_CPU_NODE,
        args=SMALL,
        cwd=jobs.reference.cwd,
        env=job_env(RUN=run.name),
    )
    state = slurm.wait(job)
    log = job.log_text()
    assert state["JobState"] == "FAILED" and state["ExitCode"].startswith("2:"), (state, log[-3000:])
    assert re.search(
        rf"error: run \S*{run.name} already finished \(summary.json\); this new SLURM job", log
    ), log
    assert "Traceback" not in log
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()} == before  # nothing rewritten
    report(f"refused: {next(line for line in log.splitlines() if line.startswith('error:'))}")
