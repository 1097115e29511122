"""The cluster path without a cluster: JobEnv read from a dict, the allocation checks, the finished-run
refusal, the W&B id on non-zero ranks, slurm/train.sbatch with a fake srun (the GPU path included), and the
submit tool's command. The jobs themselves run in engine/tests/cluster (`make test-cluster`)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.cluster.slurm import SBATCH
from trainforge.cluster import JobEnv, check_allocation
from trainforge.errors import ConfigError
from trainforge.rundir import RunOptions, resolve_run_dir

SRUN_JOB = {
    "SLURM_JOB_ID": "12",
    "SLURM_NTASKS": "4",
    "SLURM_NTASKS_PER_NODE": "2",
    "SLURM_JOB_NUM_NODES": "2",
}


def test_job_env_names_runs_and_requeue_ids() -> None:
    assert JobEnv.from_env({}).run_name() is None
    assert JobEnv.from_env({"SLURM_JOB_ID": "12"}).run_name() == "slurm-12"
    array = JobEnv.from_env({"SLURM_JOB_ID": "14", "SLURM_ARRAY_JOB_ID": "12", "SLURM_ARRAY_TASK_ID": "2"})
    assert (array.run_name(), array.requeue_id) == ("slurm-12-2", "12_2")  # the array's id, both places
    assert JobEnv.from_env({"TORCHELASTIC_RUN_ID": "abc"}).run_name() == "torchrun-abc"
    assert JobEnv.from_env({"TORCHELASTIC_RUN_ID": "none"}).run_name() is None
    assert JobEnv.from_env({"SLURM_JOB_ID": "12", "SLURM_RESTART_COUNT": "2"}).requeued


def test_job_env_ranks_and_counts() -> None:
    assert JobEnv.from_env({}).is_rank_zero
    assert not JobEnv.from_env({**SRUN_JOB, "SLURM_PROCID": "1"}).is_rank_zero
    assert not JobEnv.from_env({"LOCAL_RANK": "1"}).is_rank_zero  # Lightning's own launcher, child 1
    assert JobEnv.from_env({"RANK": "0", "SLURM_PROCID": "1"}).is_rank_zero  # torchrun inside an allocation
    assert JobEnv.from_env(SRUN_JOB).processes == 4
    assert JobEnv.from_env({**SRUN_JOB, "SLURM_JOB_NAME": "interactive"}).processes == 1
    tasks = JobEnv.from_env({"SLURM_NTASKS": "4", "SLURM_TASKS_PER_NODE": "2(x2)", "SLURM_NNODES": "2"})
    assert (tasks.tasks_per_node, tasks.num_nodes) == (2, 2)
    gpu = JobEnv.from_env({**SRUN_JOB, "SLURM_GPUS_ON_NODE": "2"})
    assert gpu.trainer_args()[:3] == [
        "--trainer.accelerator=gpu",
        "--trainer.devices=2",
        "--trainer.num_nodes=2",
    ]
    assert gpu.describe() == "job 12, restart 0: 2 nodes x 2 GPUs per node (gpu, nccl)"
    assert JobEnv.from_env(SRUN_JOB).trainer_args()[0] == "--trainer.accelerator=cpu"


@pytest.mark.parametrize(
    ("env", "devices", "nodes", "message"),
    [
        (
            {**SRUN_JOB, "SLURM_NTASKS_PER_NODE": "4"},
            2,
            2,
            "more tasks per node than devices: SLURM starts 4",
        ),
        (SRUN_JOB, 4, 2, "fewer tasks per node than devices"),
        ({**SRUN_JOB, "SLURM_GPUS_ON_NODE": "1"}, 2, 2, "each node has 1 GPUs .* --ntasks-per-node=1"),
        (SRUN_JOB, 2, 3, r"--trainer.num_nodes=3 but the SLURM job has 2 nodes \(--nodes=2\)"),
        ({"TORCHELASTIC_RUN_ID": "x", "WORLD_SIZE": "4", "LOCAL_WORLD_SIZE": "2"}, 1, 2, "torchrun starts 2"),
        ({"TORCHELASTIC_RUN_ID": "x", "WORLD_SIZE": "4", "LOCAL_WORLD_SIZE": "2"}, 2, 1, "--nnodes=2"),
    ],
)
def test_allocation_conflicts_are_named(env: dict, devices: int, nodes: int, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        check_allocation(JobEnv.from_env(env), "auto", devices, nodes)


def test_allocations_that_agree_pass() -> None:
    check_allocation(JobEnv.from_env(SRUN_JOB), "cpu", 2, 2)
    check_allocation(JobEnv.from_env(SRUN_JOB), "cpu", "auto", 2)  # devices: Lightning decides
    check_allocation(JobEnv.from_env({**SRUN_JOB, "SLURM_JOB_NAME": "bash"}), "cpu", 1, 1)  # interactive
    check_allocation(JobEnv.from_env({}), "cpu", 8, 4)  # no launcher: nothing to check
    torchrun = {"TORCHELASTIC_RUN_ID": "x", "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "1", "SLURM_NTASKS": "8"}
    check_allocation(JobEnv.from_env(torchrun), "cpu", 1, 2)  # torchrun wins over the allocation


def test_new_slurm_job_on_a_finished_run_is_refused_and_a_requeue_resumes(tmp_path: Path) -> None:
    run = tmp_path / "default" / "slurm-7"
    (run / "checkpoints").mkdir(parents=True)
    (run / "summary.json").write_text("{}")
    before = sorted(p.name for p in run.iterdir())
    options = RunOptions(root=str(tmp_path))
    with pytest.raises(ConfigError, match=r"slurm-7 already finished \(summary.json\); this new SLURM job 7"):
        resolve_run_dir(options, JobEnv.from_env({"SLURM_JOB_ID": "7"}))
    assert sorted(p.name for p in run.iterdir()) == before
    requeued = JobEnv.from_env({"SLURM_JOB_ID": "7", "SLURM_RESTART_COUNT": "1"})
    assert resolve_run_dir(options, requeued) == (run, True)
    assert resolve_run_dir(RunOptions(root=str(tmp_path)), JobEnv.from_env({})) != (run, True)  # by hand: new
    fresh = RunOptions(root=str(tmp_path), fresh=True)
    assert resolve_run_dir(fresh, JobEnv.from_env({"SLURM_JOB_ID": "7"})) == (run, True)
    assert len(list((tmp_path / "default").glob("slurm-7.replaced-*"))) == 1  # the finished run is kept


def test_refused_through_the_cli_before_any_run_directory(
    refused, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in {**SRUN_JOB, "SLURM_PROCID": "0"}.items():
        monkeypatch.setenv(key, value)
    code, err = refused("fit", "--trainer.devices=1", "--trainer.num_nodes=2")
    assert code == 2
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert errors == [errors[0]] and "more tasks per node than devices: SLURM starts 2 tasks" in errors[0]
    assert not (tmp_path / "runs").exists()


def test_only_rank_zero_creates_the_wandb_id(tmp_path: Path) -> None:
    from trainforge.loggers import wandb_run_id

    assert wandb_run_id(tmp_path, create=False) is None  # rank 1 before rank 0: goes without
    assert not list(tmp_path.iterdir())
    made = wandb_run_id(tmp_path, create=True)
    assert made and wandb_run_id(tmp_path, create=False) == made
    assert [p.name for p in tmp_path.iterdir()] == ["wandb_id.txt"]


def _sbatch(tmp_path: Path, env: dict[str, str], *args: str) -> tuple[str, list[str]]:
    """Run slurm/train.sbatch as SLURM would, with an srun that records its command line."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    calls = tmp_path / "srun.args"
    (bin_dir / "srun").write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {calls}\n')
    (bin_dir / "srun").chmod(0o755)
    result = subprocess.run(
        ["bash", str(SBATCH), *args],
        env={"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "SLURM_SUBMIT_DIR": str(tmp_path), **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout, calls.read_text().splitlines()


def test_sbatch_script_takes_devices_and_nodes_from_the_allocation(tmp_path: Path) -> None:
    gpu = {
        "SLURM_JOB_ID": "5",
        "SLURM_JOB_NUM_NODES": "2",
        "SLURM_NTASKS_PER_NODE": "4",
        "SLURM_GPUS_ON_NODE": "4",
    }
    out, srun = _sbatch(tmp_path, gpu, "--trainer.max_epochs=3")
    assert "job 5, restart 0: 2 nodes x 4 GPUs per node (gpu, nccl)" in out
    assert srun[:2] == ["--kill-on-bad-exit=1", ".venv/bin/python"]
    assert srun[5:9] == [
        "--trainer.accelerator=gpu",
        "--trainer.devices=4",
        "--trainer.num_nodes=2",
        "--trainer.strategy=ddp",
    ]
    assert srun[-1] == "--trainer.max_epochs=3"  # the user's arguments come after, so they win

    cpu = {"SLURM_JOB_ID": "6", "SLURM_NNODES": "1", "SLURM_TASKS_PER_NODE": "2", "SLURM_RESTART_COUNT": "1"}
    out, srun = _sbatch(tmp_path, {**cpu, "RUN": "mine"})
    assert "job 6, restart 1: 1 nodes x 2 CPU processes per node (cpu, gloo)" in out
    assert "x 1 GPUs" not in out and "--trainer.accelerator=cpu" in srun and "--trainer.devices=2" in srun
    assert "--run.name=mine" in srun

    (tmp_path / "lrs.txt").write_text("--model.lr=0.1\n--model.lr=0.2 --model.weight_decay=0\n")
    array = {
        **cpu,
        "SLURM_ARRAY_JOB_ID": "6",
        "SLURM_ARRAY_TASK_ID": "1",
        "ARRAY_ARGS": str(tmp_path / "lrs.txt"),
    }
    out, srun = _sbatch(tmp_path, array, "--model.lr=9")
    assert "(array task 1)" in out
    assert srun[-3:] == ["--model.lr=9", "--model.lr=0.2", "--model.weight_decay=0"]  # the task's line wins


def test_submit_passes_fit_arguments_and_takes_devices_from_the_job() -> None:
    from trainforge.cluster.submit import TrainJob
    from trainforge.tools.submit import _parser, _run_name

    options, unknown = _parser().parse_known_args(["--nodes", "1", "--trainer.max_epochs=2"])
    assert options.nodes == 1 and options.gpus_per_node == 4 and unknown == ["--trainer.max_epochs=2"]
    job = TrainJob(["--trainer.max_epochs=2"], "/tmp")
    env = JobEnv.from_env({**SRUN_JOB, "SLURM_GPUS_ON_NODE": "2"})
    assert job.command(env) == ["fit", *env.trainer_args(), "--trainer.max_epochs=2"]
    assert _run_name(["--experiment", "swa"], "9") == "runs/swa/slurm-9"
    assert _run_name(["--run.name=x"], "9") == "runs/default/x"
