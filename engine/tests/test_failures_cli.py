"""Failures a user meets through the CLI: one clear message on stderr, a non-zero exit, nothing lost."""

from __future__ import annotations

import hashlib
import resource
import shutil
import signal

import pytest
import torch

from tests.conftest import FAST, run_cli

QUIET = [*FAST, "--wandb.enabled=false"]


def fit(cwd, name, *extra, check=True):
    return run_cli(
        "fit", "--run.name", name, f"--run.root={cwd / 'runs'}", *QUIET, *extra, cwd=cwd, check=check
    )


def ckpt_dir(cwd, name):
    return cwd / "runs" / "default" / name / "checkpoints"


def assert_clear_error(result, *needles):
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    for needle in needles:
        assert needle in result.stderr, (needle, result.stderr[-3000:])


def best_state(path):
    state = torch.load(path, map_location="cpu", weights_only=False)["callbacks"]
    return next(v for k, v in state.items() if k.startswith("ModelCheckpoint"))


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """One finished 2-epoch run (8 steps); tests copy it before changing anything."""
    cwd = tmp_path_factory.mktemp("failures")
    fit(cwd, "base")
    return cwd


def copy_run(cwd, name):
    shutil.copytree(cwd / "runs" / "default" / "base", cwd / "runs" / "default" / name)
    return ckpt_dir(cwd, name)


@pytest.mark.slow
def test_corrupt_last_ckpt_is_named_and_left_in_place(base):
    ckpts = copy_run(base, "corrupt")
    last = ckpts / "last.ckpt"
    last.write_bytes(last.read_bytes()[:1000])  # truncated, as after a crash mid-copy
    before = sha(last)
    result = fit(base, "corrupt", check=False)
    assert_clear_error(result, f"cannot resume from checkpoint {last}", "left in place", "--run.fresh=true")
    assert sha(last) == before


@pytest.mark.slow
def test_incompatible_last_ckpt_is_named(base):
    ckpts = copy_run(base, "other-arch")
    before = sha(ckpts / "last.ckpt")
    result = fit(base, "other-arch", "--model.backbone=resnet14t", "--trainer.max_epochs=3", check=False)
    assert_clear_error(result, f"cannot resume from checkpoint {ckpts / 'last.ckpt'}", "--run.fresh=true")
    assert sha(ckpts / "last.ckpt") == before


@pytest.mark.slow
def test_full_disk_while_saving_keeps_the_previous_checkpoint(base):
    ckpts = copy_run(base, "full-disk")
    last = ckpts / "last.ckpt"
    limit = last.stat().st_size // 2  # every write past half a checkpoint fails, like a full disk

    def small_disk():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG as an error, not a killed process
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    args = ["fit", "--run.name", "full-disk", f"--run.root={base / 'runs'}", *QUIET, "--trainer.max_epochs=3"]
    result = run_cli(*args, cwd=base, check=False, preexec_fn=small_disk)
    assert_clear_error(result, "disk is full", "Checkpoints written before are kept")
    checkpoint = torch.load(last, map_location="cpu", weights_only=False)  # still readable, still the old one
    assert checkpoint["global_step"] == 8


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    model = ["--model=tests.failing_modules.NaNClassifier", "--model.nan_at_steps=[5]"]
    result = fit(tmp_path, "nan", *model, check=False)
    assert_clear_error(result, "the training loss became nan", "global step 5", "--nonfinite.action=skip")
    last = torch.load(ckpt_dir(tmp_path, "nan") / "last.ckpt", map_location="cpu", weights_only=False)
    assert last["global_step"] == 4  # written after epoch 0, not overwritten by the NaN step
    assert all(torch.isfinite(v).all() for v in last["state_dict"].values() if v.is_floating_point())


@pytest.mark.slow
def test_nan_loss_skips_the_step_when_configured(tmp_path):
    model = [
        "--model=tests.failing_modules.NaNClassifier",
        "--model.nan_at_steps=[2,5]",
        "--nonfinite.action=skip",
    ]
    result = fit(tmp_path, "skip", *model)
    assert "skipped 2 training step(s) with a NaN/Inf loss at global steps [2, 5]" in result.stderr
    last = torch.load(ckpt_dir(tmp_path, "skip") / "last.ckpt", map_location="cpu", weights_only=False)
    assert last["global_step"] == 8
    assert all(torch.isfinite(v).all() for v in last["state_dict"].values() if v.is_floating_point())


@pytest.mark.slow
def test_resume_keeps_the_best_checkpoint_of_the_first_part(base):
    # The base run itself, resumed in place (a copy has another dirpath, so Lightning would not restore the
    # best-so-far); it is last in this module because it changes the base run.
    ckpts = ckpt_dir(base, "base")
    (best_before,) = ckpts.glob("best-*.ckpt")
    first = best_state(ckpts / "last.ckpt")
    digest = sha(best_before)
    fit(base, "base", "--trainer.max_epochs=3")
    after = best_state(ckpts / "last.ckpt")
    bests = list(ckpts.glob("best-*.ckpt"))
    assert len(bests) == 1 and str(bests[0]) == after["best_model_path"]
    old, new = float(first["best_model_score"]), float(after["best_model_score"])
    assert new >= old  # a worse later epoch never replaces the earlier best
    if bests[0] == best_before:  # not beaten: the earlier best file is untouched
        assert new == pytest.approx(old) and sha(best_before) == digest
    else:  # beaten or tied by epoch 3 (a tie goes to the later epoch): the file is epoch 3's, the earlier gone
        assert "epoch002" in bests[0].name and not best_before.exists()
    assert torch.load(ckpts / "last.ckpt", map_location="cpu", weights_only=False)["global_step"] == 12
