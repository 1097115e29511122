"""Kill -9 mid-epoch and rerun: exact continuation; SIGUSR1/SIGTERM: checkpoint, requeue, clean exit."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import CONFIGS, FAST, REPO, run_cli
from tests.fault_helpers import state_digest

pytestmark = pytest.mark.timeout(600)

# 2 epochs x 4 batches; last.ckpt every 3 steps, so step 3 is mid-epoch; the train transform is random.
ARGS = [
    "fit",
    *FAST,
    "--trainer.accelerator=cpu",
    "--trainer.devices=1",
    "--trainer.deterministic=true",
    "--checkpoint.every_n_train_steps=3",
    "--data.test_fraction=0.0505",
    "--wandb.enabled=false",
    "--trainer.callbacks+=tests.fault_helpers.PauseAtStep",
]


def _env(**extra: str) -> dict[str, str]:
    pythonpath = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    return {
        **os.environ,
        "TRAINFORGE_CONFIGS": str(CONFIGS),
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": pythonpath,
        **extra,
    }


def _start(args: list[str], cwd: Path, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "trainforge", *args],
        cwd=cwd,
        env=_env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(
                f"exited {proc.returncode} before {path} appeared:\n{proc.stdout.read()[-4000:]}"
            )
        if time.time() > deadline:
            proc.kill()
            raise AssertionError(f"{path} did not appear within {timeout} s")
        time.sleep(0.05)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=False)["state_dict"]


def _summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cwd = tmp_path_factory.mktemp("reference")
    run_cli(*ARGS, "--run.name=ref", cwd=cwd)
    return cwd / "runs" / "default" / "ref"


@pytest.mark.slow
def test_kill_mid_epoch_then_rerun_equals_uninterrupted(reference: Path, tmp_path: Path) -> None:
    run = tmp_path / "runs" / "default" / "killed"
    proc = _start([*ARGS, "--run.name=killed"], tmp_path, TRAINFORGE_TEST_PAUSE_AT_STEP="3")
    _wait_for(run / "paused", proc)
    saved = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert saved["global_step"] == 3 and saved["epoch"] == 0  # mid-epoch (4 batches per epoch)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    resumed = run_cli(*ARGS, "--run.name=killed", cwd=tmp_path)  # the same command
    assert f"Resuming run {run}" in resumed.stdout + resumed.stderr
    assert "not resumable" not in resumed.stderr
    ours, ref = _summary(run), _summary(reference)
    assert (ours["global_step"], ours["epoch"]) == (ref["global_step"], ref["epoch"]) == (8, 2)
    assert sorted(p.name for p in (run / "checkpoints").glob("last*")) == ["last.ckpt"]  # no last-v1.ckpt
    final = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert final["global_step"] == 8
    assert state_digest(_weights(run / "checkpoints" / "last.ckpt")) == state_digest(
        _weights(reference / "checkpoints" / "last.ckpt")
    )
    assert ours["metrics"] == ref["metrics"]  # exactly, not approximately


@pytest.mark.slow
def test_explicit_ckpt_path_and_fresh(reference: Path, tmp_path: Path) -> None:
    # A run is continued from an explicit checkpoint of another run: it starts at that step.
    base = [a for a in ARGS if a != "--trainer.max_epochs=2"]
    out = run_cli(
        *base,
        "--trainer.max_epochs=3",
        "--run.name=from-ref",
        f"--ckpt_path={reference}/checkpoints/last.ckpt",
        cwd=tmp_path,
    )
    assert "Restoring states from the checkpoint path" in out.stdout + out.stderr
    assert _summary(tmp_path / "runs" / "default" / "from-ref")["global_step"] == 12
    # --run.fresh=true on that run starts over (the old directory is kept aside).
    run_cli(*base, "--trainer.max_epochs=1", "--run.name=from-ref", "--run.fresh=true", cwd=tmp_path)
    assert _summary(tmp_path / "runs" / "default" / "from-ref")["global_step"] == 4
    assert len(list((tmp_path / "runs" / "default").glob("from-ref.replaced-*"))) == 1


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGUSR1, signal.SIGTERM])
def test_signal_saves_requeues_and_exits_cleanly(signum: int, reference: Path, tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "scontrol.args"
    scontrol = bin_dir / "scontrol"
    scontrol.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    scontrol.chmod(0o755)
    env = {
        "TRAINFORGE_TEST_PAUSE_AT_STEP": "2",
        "SLURM_JOB_ID": "4242",
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
    }
    proc = _start([*ARGS, "--checkpoint.every_n_train_steps=100"], tmp_path, **env)
    run = tmp_path / "runs" / "default" / "slurm-4242"  # the job id names the run
    _wait_for(run / "paused", proc)
    assert not (run / "checkpoints" / "last.ckpt").exists()
    proc.send_signal(signum)
    (run / "release").write_text("")
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, output[-4000:]
    saved = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert saved["global_step"] == 3  # saved at the end of the batch during which the signal came
    assert calls.read_text().split() == ["requeue", "4242"]
    assert f"got {signal.Signals(signum).name}" in output
    assert "preempted at step 3" in output and "resume with: " in output
    assert not (run / "summary.json").exists()
    assert "terminate called" not in output
    if signum != signal.SIGTERM:
        return
    # The requeued job reruns the command: it resumes mid-epoch at step 3 and ends as an uninterrupted run.
    # (Lightning's epoch-end and train-end saves once wrote over the preemption's last.ckpt here, so the
    # rerun found a "finished" epoch and trained nothing.)
    env.pop("TRAINFORGE_TEST_PAUSE_AT_STEP")
    rerun = subprocess.run(
        [sys.executable, "-m", "trainforge", *ARGS, "--checkpoint.every_n_train_steps=100"],
        cwd=tmp_path,
        env=_env(**env, SLURM_RESTART_COUNT="1"),
        capture_output=True,
        text=True,
    )
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"Resuming run {run}" in rerun.stdout + rerun.stderr
    assert (_summary(run)["global_step"], _summary(run)["epoch"]) == (8, 2)
    assert state_digest(_weights(run / "checkpoints" / "last.ckpt")) == state_digest(
        _weights(reference / "checkpoints" / "last.ckpt")
    )
    assert _summary(run)["metrics"] == _summary(reference)["metrics"]


@pytest.mark.slow
def test_ctrl_c_saves_prints_the_resume_command_and_a_new_run_points_at_it(tmp_path: Path) -> None:
    env = {"TRAINFORGE_TEST_PAUSE_AT_STEP": "2"}
    args = [*ARGS, "--checkpoint.every_n_train_steps=100", "--run.name=20990101-000000"]
    proc = _start(args, tmp_path, **env)
    run = tmp_path / "runs" / "default" / "20990101-000000"
    _wait_for(run / "paused", proc)
    proc.send_signal(signal.SIGINT)  # what Ctrl-C sends to the foreground process
    (run / "release").write_text("")
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, output[-4000:]
    assert (
        torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["global_step"]
        == 3
    )
    assert "interrupted (Ctrl-C) at step 3" in output and "Traceback" not in output
    resume = next(line for line in output.splitlines() if line.startswith("resume with: "))
    assert resume.endswith("--run.name=20990101-000000") and "-m trainforge fit" in resume
    assert not (run / "summary.json").exists()
    # The same command without a run name starts a new run, and says how to continue the stopped one.
    rerun = [a for a in ARGS if not a.startswith("--trainer.callbacks")] + ["--trainer.max_epochs=1"]
    done = subprocess.run(
        [sys.executable, "-m", "trainforge", *rerun], cwd=tmp_path, env=_env(), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    note = next(line for line in (done.stdout + done.stderr).splitlines() if "stopped before its end" in line)
    assert str(run) in note and "--run.name=20990101-000000" in note


class _Unpicklable:
    def __reduce__(self):  # noqa: ANN204
        raise RuntimeError("killed mid-write")


def test_atomic_checkpoint_write_keeps_previous_file(tmp_path: Path) -> None:
    from trainforge.training.checkpointing import AtomicCheckpointIO

    io = AtomicCheckpointIO()
    path = tmp_path / "checkpoints" / "last.ckpt"
    io.save_checkpoint({"global_step": 1, "w": torch.ones(3)}, path)
    with pytest.raises(RuntimeError, match="killed mid-write"):
        io.save_checkpoint({"global_step": 2, "w": torch.ones(3), "bad": _Unpicklable()}, path)
    assert torch.load(path, weights_only=False)["global_step"] == 1  # the previous file is intact
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]  # no temporary file left behind


def test_resume_prefers_newer_hpc_checkpoint(tmp_path: Path) -> None:
    from trainforge.rundir import RunDir

    resume_checkpoint = RunDir(tmp_path).resume_checkpoint
    assert resume_checkpoint() is None
    (tmp_path / "checkpoints").mkdir()
    last = tmp_path / "checkpoints" / "last.ckpt"
    last.write_bytes(b"x")
    hpc = tmp_path / "hpc_ckpt_1.ckpt"
    hpc.write_bytes(b"x")
    os.utime(last, ns=(1_000_000_000, 1_000_000_000))
    assert resume_checkpoint() == hpc
    os.utime(hpc, ns=(1_000, 1_000))
    assert resume_checkpoint() == last


def test_requeue_without_scontrol_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from trainforge.training.preemption import requeue_slurm_job, slurm_job_id

    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.warns(UserWarning, match="scontrol` is not on PATH.*NOT requeued"):
        assert requeue_slurm_job("17") is False
    monkeypatch.setenv("SLURM_JOB_ID", "17")
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "16")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    assert slurm_job_id() == "16_3"


def test_resume_command_speaks_make_only_when_a_make_training_target_launched_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from trainforge.finish import resume_command
    from trainforge.rundir import RunDir

    run = RunDir(tmp_path / "runs" / "finetune" / "r1")
    argv = ["fit", "--experiment", "finetune", "--data.root=flowers", "--run.name=old"]
    monkeypatch.delenv("TRAINFORGE_VIA_MAKE", raising=False)
    monkeypatch.setenv("MAKELEVEL", "1")  # any process under `make test` has it: not a reason for make terms
    monkeypatch.setattr(sys, "argv", ["/project/template/__main__.py", *argv])  # `python -m template`
    assert resume_command(argv, run) == (
        "python -m template fit --experiment finetune --data.root=flowers --run.name=r1"
    )
    monkeypatch.setenv("TRAINFORGE_VIA_MAKE", "1")
    assert resume_command(argv, run) == 'make train EXPERIMENT=finetune RUN=r1 ARGS="--data.root=flowers"'
