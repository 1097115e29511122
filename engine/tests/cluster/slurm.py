"""A real SLURM cluster on this machine for tests (scripts/slurm_local.sh), and what a test needs to submit a
job to it and wait for it. Importable by any test: the `slurm` fixture (conftest.py) gives a started
`LocalSlurm`; a test outside this folder can start one with `local_slurm()`.

    def test_something(slurm: LocalSlurm, tmp_path: Path) -> None:
        job = slurm.sbatch(*TWO_CPU_NODES, args=["--trainer.max_epochs=1"], cwd=tmp_path)
        state = slurm.wait(job)
        assert state["JobState"] == "COMPLETED", job.log_text()
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import REPO

ROOT = REPO.parent  # the template's checkout: scripts/, slurm/, configs/, the project package
SCRIPT = ROOT / "scripts" / "slurm_local.sh"
SBATCH = ROOT / "slurm" / "train.sbatch"
PROJECT_CONFIGS = ROOT / "configs"
TOOLS = ("slurmctld", "slurmd", "munged", "mungekey", "sbatch", "scontrol", "squeue", "scancel", "runuser")
DONE = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE"}
# sbatch options of a CPU job on the local cluster; the script's GPU defaults are overridden as a user would.
CPU_TASK = ["--ntasks-per-node=1", "--gpus-per-node=0", "--cpus-per-task=1", "--mem=0", "--time=00:15:00"]
TWO_CPU_NODES = ["--nodes=2", *CPU_TASK]
ONE_CPU_NODE = ["--nodes=1", *CPU_TASK]
REPORT_ENV = "TRAINFORGE_CLUSTER_REPORT"  # a file the test-cluster target prints at the end


def unavailable() -> str | None:
    """Why this machine cannot run the local cluster, in one line; None when it can."""
    if not SCRIPT.is_file() or not SBATCH.is_file():
        return "no scripts/slurm_local.sh or slurm/train.sbatch in this checkout"
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        return "the local SLURM cluster needs root on Linux (slurmd runs jobs, munged runs as `munge`)"
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        return f"{', '.join(missing)} not installed: apt-get install -y slurm-wlm munge (as root)"
    return None


def report(line: str) -> None:
    """Print a result line (pytest -s shows it) and add it to the file $TRAINFORGE_CLUSTER_REPORT."""
    print(line, flush=True)
    path = os.environ.get(REPORT_ENV)
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as file:
            file.write(line + "\n")


def job_env(**extra: str) -> dict[str, str]:
    """The environment a job runs with (sbatch exports it): this checkout's code and configs, offline W&B."""
    pythonpath = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    return {
        **os.environ,
        "PYTHON": sys.executable,
        "TRAINFORGE_CONFIGS": str(PROJECT_CONFIGS),
        "PYTHONPATH": pythonpath,  # the engine under test and tests.fault_helpers
        "PYTHONUNBUFFERED": "1",
        "WANDB_MODE": "offline",
        **extra,
    }


@dataclass
class Job:
    """A submitted job: its id and the folder it was submitted from (its runs/ and its log are there)."""

    id: str
    cwd: Path
    submitted: float = field(default_factory=time.time)
    array_task: int | None = None

    @property
    def log(self) -> Path:
        if self.array_task is not None:
            return self.cwd / f"slurm-{self.id}_{self.array_task}.out"
        return self.cwd / f"slurm-{self.id}.out"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.is_file() else f"(no log at {self.log})"

    def runs(self, experiment: str = "default") -> list[Path]:
        folder = self.cwd / "runs" / experiment
        return sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []


class LocalSlurm:
    """scripts/slurm_local.sh's cluster in `directory`: start, stop (every daemon by its pid), submit, wait."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.env = {**os.environ, "SLURM_CONF": str(self.directory / "slurm.conf")}

    def start(self) -> None:
        result = subprocess.run(
            [str(SCRIPT), "start", str(self.directory)], capture_output=True, text=True, timeout=120
        )
        if result.returncode != 0:
            logs = "\n".join(
                f"--- {p.name}\n{p.read_text(errors='replace')[-2000:]}" for p in self.directory.glob("log/*")
            )
            raise RuntimeError(f"slurm_local.sh start failed:\n{result.stdout}{result.stderr}{logs}")

    def stop(self) -> None:
        subprocess.run([str(SCRIPT), "stop", str(self.directory)], capture_output=True, timeout=120)

    def run(self, *command: str, check: bool = True) -> str:
        result = subprocess.run(command, env=self.env, capture_output=True, text=True, timeout=60)
        if check and result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}): {result.stderr}")
        return result.stdout

    def sbatch(
        self,
        *options: str,
        args: Sequence[str] = (),
        cwd: Path,
        env: dict[str, str] | None = None,
        script: Path = SBATCH,
    ) -> Job:
        """`sbatch <options> <script> <args>` from `cwd` with `env` (job_env() by default)."""
        result = subprocess.run(
            ["sbatch", "--parsable", *options, str(script), *args],
            cwd=cwd,
            env={**(env or job_env()), "SLURM_CONF": self.env["SLURM_CONF"]},
            capture_output=True,
            text=True,
            timeout=60,
        )
        if result.returncode != 0:
            raise RuntimeError(f"sbatch refused the job: {result.stderr.strip()}")
        return Job(result.stdout.strip().split(";")[0], Path(cwd))

    def states(self, job_id: str) -> list[dict[str, str]]:
        """`scontrol show job -o`, one dict per job (an array: one per task); [] once it is forgotten."""
        out = self.run("scontrol", "show", "job", "-o", job_id, check=False)
        return [dict(re.findall(r"(\w+)=(\S*)", line)) for line in out.splitlines() if line.strip()]

    def state(self, job: Job | str) -> dict[str, str]:
        job_id = job.id if isinstance(job, Job) else job
        states = self.states(job_id)
        if isinstance(job, Job) and job.array_task is not None:
            states = [s for s in states if s.get("ArrayTaskId") == str(job.array_task)]
        return states[0] if states else {}

    def wait(self, job: Job, timeout: float = 420, history: list | None = None) -> dict[str, str]:
        """Wait until the job has ended (a requeued job is pending again, not ended); its last state.

        `history` (a list) receives (seconds since submission, JobState, Reason, Restarts) at each change.
        """
        deadline = time.time() + timeout
        seen = None
        while True:
            state = self.state(job)
            now = (state.get("JobState"), state.get("Reason"), state.get("Restarts"))
            if history is not None and now != seen:
                history.append((round(time.time() - job.submitted, 1), *now))
            seen = now
            if state.get("JobState") in DONE:
                return state
            if time.time() > deadline:
                raise AssertionError(
                    f"job {job.id} still {state.get('JobState')} after {timeout} s:\n{job.log_text()[-4000:]}"
                )
            time.sleep(0.5)

    def wait_for_file(self, path: Path, job: Job, timeout: float = 300) -> None:
        deadline = time.time() + timeout
        while not path.exists():
            state = self.state(job).get("JobState")
            if state in DONE:
                raise AssertionError(
                    f"job {job.id} ended ({state}) before {path} appeared:\n{job.log_text()[-4000:]}"
                )
            if time.time() > deadline:
                raise AssertionError(f"{path} did not appear within {timeout} s:\n{job.log_text()[-4000:]}")
            time.sleep(0.2)

    def signal(self, job: Job, name: str) -> None:
        """`scancel --signal=<name> <job>`: every task of the job's steps gets it (not the batch shell), as
        with `--signal=<name>@<s>` before the time limit."""
        self.run("scancel", f"--signal={name}", job.id)


@contextlib.contextmanager
def local_slurm() -> Iterator[LocalSlurm]:
    """Start a cluster in a fresh folder under /tmp (munged must reach it); stop every daemon at the end."""
    directory = Path(tempfile.mkdtemp(prefix="slurm-local-", dir="/tmp"))
    cluster = LocalSlurm(directory)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(directory, ignore_errors=True)
