"""`python -m <project> submit [options] -- <fit arguments>`: the job of slurm/train.sbatch, submitted from
Python with submitit (the `cluster` extra). Defaults are the sbatch script's: 2 nodes x 4 GPUs, one task per
GPU, 8 CPUs per task, 4 hours, SIGUSR1 120 s before the limit, requeued on preemption; a CPU cluster takes
`--gpus-per-node 0`. Devices and nodes reach `fit` from the allocation, as under sbatch.

    python -m template submit --nodes 1 --tasks-per-node 1 --gpus-per-node 0 -- --trainer.max_epochs=5
    python -m template submit --partition gpu --time 600 --wait -- --experiment finetune --data.root=flowers

Requeue and resume work as under sbatch (cluster/submit.py says who owns the signal): the job requeues
itself at a preemption signal and the restarted job resumes `runs/<experiment>/slurm-<job id>`.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from trainforge.cluster.submit import PREEMPT_SIGNAL, TrainJob, executor
from trainforge.errors import TemplateError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="submit",
        description="Submit `fit` to SLURM (submitit): arguments after `--` (or unknown to submit) go to fit.",
        allow_abbrev=False,
    )
    parser.add_argument("--nodes", type=int, default=2)
    parser.add_argument("--tasks-per-node", type=int, default=4, help="= devices per node (one task each)")
    parser.add_argument("--gpus-per-node", type=int, default=4, help="0 on a CPU cluster")
    parser.add_argument(
        "--cpus-per-task", type=int, default=8, help="DataLoader workers and threads per task"
    )
    parser.add_argument("--mem", default="0", help="memory per node (sbatch --mem; 0: all of it)")
    parser.add_argument("--time", type=int, default=240, help="time limit in minutes")
    parser.add_argument("--partition", default=None)
    parser.add_argument(
        "--signal-delay", type=int, default=120, help="SIGUSR1 this many seconds before the limit"
    )
    parser.add_argument("--job-name", default=None, help="default: the project's name")
    parser.add_argument("--folder", default="runs/submitit", help="submitit's logs and pickles (%%j: job id)")
    parser.add_argument("--wait", action="store_true", help="wait for the job and print its run directory")
    return parser


def _run_name(fit_args: list[str], job_id: str) -> str:
    experiment = "default"
    for i, arg in enumerate(fit_args):
        if arg == "--experiment" and i + 1 < len(fit_args):
            experiment = fit_args[i + 1]
        elif arg.startswith("--experiment="):
            experiment = arg.split("=", 1)[1]
    named = [a.split("=", 1)[1] for a in fit_args if a.startswith("--run.name=")]
    return f"runs/{experiment}/{named[-1] if named else f'slurm-{job_id}'}"


def main(argv: list[str]) -> int:
    argv = list(argv)
    fit_args = argv[argv.index("--") + 1 :] if "--" in argv else []
    options, unknown = _parser().parse_known_args(argv[: argv.index("--")] if "--" in argv else argv)
    fit_args = [*unknown, *fit_args]
    package = (
        Path(sys.argv[0]).parent.name if sys.argv and sys.argv[0].endswith("__main__.py") else "trainforge"
    )
    parameters = {
        "nodes": options.nodes,
        "ntasks_per_node": options.tasks_per_node,
        "gpus_per_node": options.gpus_per_node,
        "cpus_per_task": options.cpus_per_task,
        "mem": options.mem,
        "time": options.time,
        "signal_delay_s": options.signal_delay,
        "job_name": options.job_name or package,
        "stderr_to_stdout": True,
    }
    if options.partition:
        parameters["partition"] = options.partition
    pool = executor(Path(options.folder), **parameters)
    try:
        job = pool.submit(TrainJob(fit_args, os.getcwd(), package))
    except Exception as error:  # sbatch's refusal (a bad partition, too many GPUs...) in one line
        raise TemplateError(f"sbatch refused the job: {str(error).strip().splitlines()[-1]}") from error
    devices = f"{options.gpus_per_node} GPUs" if options.gpus_per_node else "CPU processes"
    print(
        f"submitted SLURM job {job.job_id}: {options.nodes} nodes x {options.tasks_per_node} tasks per node "
        f"({devices}), requeued at SIG{PREEMPT_SIGNAL} ({options.signal_delay} s before the limit)"
    )
    print(f"log: {job.paths.stdout}".replace("%t", "0"))
    print(f"run: {_run_name(fit_args, job.job_id)}")
    if options.wait:
        print(f"run directory: {job.result()}")
    return 0
