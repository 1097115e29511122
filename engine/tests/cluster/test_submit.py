"""`python -m template submit` (submitit) on the local SLURM cluster: the job runs, a SIGUSR1 during training
reaches the engine's handler (not submitit's), which saves and requeues; the restarted job resumes the same
run and submitit records one result."""

from __future__ import annotations

import pickle
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.cluster.slurm import Job, LocalSlurm, job_env, report
from tests.cluster.test_slurm_jobs import SMALL

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(600)]


def test_submit_runs_and_a_preempted_job_resumes_the_same_run(slurm: LocalSlurm, tmp_path: Path) -> None:
    env = {**job_env(TRAINFORGE_TEST_PAUSE_AT_STEP="8"), "SLURM_CONF": slurm.env["SLURM_CONF"]}
    options = ["--nodes", "1", "--tasks-per-node", "1", "--gpus-per-node", "0", "--cpus-per-task", "1"]
    submitted = subprocess.run(
        [sys.executable, "-m", "template", "submit", *options, "--time", "15", "--", *SMALL],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    job_id = re.search(r"submitted SLURM job (\d+)", submitted.stdout).group(1)
    assert f"run: runs/default/slurm-{job_id}" in submitted.stdout
    job = Job(job_id, tmp_path)
    log = tmp_path / "runs" / "submitit" / f"{job_id}_0_log.out"
    run = tmp_path / "runs" / "default" / f"slurm-{job_id}"

    slurm.wait_for_file(run / "paused", job)
    slurm.signal(job, "USR1")
    time.sleep(2)
    (run / "release").write_text("")
    history: list = []
    state = slurm.wait(job, history=history)
    text = log.read_text(errors="replace")
    assert (state["JobState"], state["ExitCode"], state["Restarts"]) == ("COMPLETED", "0:0", "1"), text[
        -5000:
    ]

    assert "Preemption: got SIGUSR1; saving" in text and f"Preemption: requeueing SLURM job {job_id}" in text
    assert "Caught signal" not in text  # submitit's handler never ran: the engine owned the signal
    assert re.search(rf"job {job_id}, restart 0: 1 nodes x 1 CPU processes per node \(cpu, gloo\)", text)
    assert re.search(rf"job {job_id}, restart 1: 1 nodes x 1 CPU processes per node", text)
    assert f"Resuming run {run} from {run}/checkpoints/last.ckpt" in text
    resumed = [int(s) for s in re.findall(r"rank 0 of 1 on node n1 starts at step (\d+)", text)]
    assert len(resumed) == 2 and resumed[0] == 0 and 8 < resumed[1] < 12, text[-4000:]
    assert [p.name for p in (tmp_path / "runs" / "default").iterdir()] == [run.name]
    assert '"global_step": 12' in (run / "summary.json").read_text()
    with open(tmp_path / "runs" / "submitit" / f"{job_id}_0_result.pkl", "rb") as file:
        outcome, value = pickle.load(file)
    assert (outcome, value) == ("success", str(run))  # one result: the finished run's
    report(
        f"submit (submitit) job {job_id}: restart count {state['Restarts']}, resumed from step {resumed[1]}, "
        f"final step 12, {time.time() - job.submitted:.0f} s from submission"
    )
