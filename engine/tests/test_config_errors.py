"""Config mistakes are refused before anything runs, naming the key, with one message and no traceback."""

from __future__ import annotations

import pytest

from trainforge.cli import main
from trainforge.errors import closest
from trainforge.validation import CHECKS, config_check, validate_config
from tests.conftest import FAST, CONFIGS, REPO, run_cli


@pytest.fixture
def cli(tmp_path, monkeypatch, capsys):
    """Run `main()` in this process (fast) and return (exit code, stderr)."""
    monkeypatch.setenv("TRAINFORGE_CONFIGS", str(CONFIGS))
    monkeypatch.delenv("TRAINFORGE_DEBUG", raising=False)
    monkeypatch.chdir(tmp_path)

    def call(*args: str) -> tuple[int, str]:
        with pytest.raises(SystemExit) as exit_info:
            main(["fit", f"--run.root={tmp_path / 'runs'}", *FAST, "--wandb.enabled=false", *args])
        return exit_info.value.code, capsys.readouterr().err

    return call


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--model.lrr=0.1"], ["unknown config key 'model.lrr'", "Did you mean 'model.lr'"]),
        (["--data.batch_sise=8"], ["unknown config key 'data.batch_sise'", "Did you mean 'data.batch_size'"]),
        (["--trainer.max_epochz=2"], ["trainer.max_epochz", "Did you mean 'trainer.max_epochs'"]),
        (["--model.lr=abc"], ["wrong type for 'model.lr'", "float", "abc"]),
        (["--model.lr=-1"], ["model.lr=-1.0", "must be positive"]),
        (["--trainer.max_epochs=-3"], ["trainer.max_epochs=-3"]),
        (["--data.batch_size=0"], ["data.batch_size=0", "bs-find"]),
        (["--model.warmup_epochs=5"], ["model.warmup_epochs=5", "longer than training"]),
        (["--model.num_classes=1"], ["model.num_classes=1", "at least 2"]),
        (["--config=missing.yaml"], ["missing.yaml", "does not exist"]),
        (
            ["--data=trainforge.data.ImageFolderDataModule"],
            [
                "'data': cannot import 'trainforge.data.ImageFolderDataModule'",
                "Did you mean 'trainforge.data.image_folder.ImageFolderDataModule'",
            ],
        ),
    ],
)
def test_bad_config_is_refused_naming_the_key(cli, tmp_path, args, needles):
    code, err = cli(*args)
    assert code == 2
    assert "Traceback" not in err and err.startswith("error:")
    for needle in needles:
        assert needle in err, (needle, err)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("*.ckpt"))


def test_typo_in_a_config_file_is_named(cli, tmp_path):
    (tmp_path / "exp.yaml").write_text("model:\n  init_args:\n    weight_decai: 0.1\n")
    code, err = cli("--config", str(tmp_path / "exp.yaml"))
    assert code == 2 and "model.weight_decai" in err and "Did you mean 'model.weight_decay'" in err


def test_several_problems_are_listed_together(cli):
    code, err = cli("--model.lr=0", "--data.batch_size=0")
    assert code == 2 and "model.lr=0.0" in err and "data.batch_size=0" in err


def test_registered_checks_run(monkeypatch):
    from jsonargparse import Namespace

    @config_check
    def unfreeze_in_time(config, subcommand):
        if config.finetune.unfreeze_epoch >= config.trainer.max_epochs:
            yield "finetune.unfreeze_epoch is after the last epoch"

    monkeypatch.setattr("trainforge.validation.CHECKS", [*CHECKS[:-1], unfreeze_in_time])
    config = Namespace(finetune=Namespace(unfreeze_epoch=9), trainer=Namespace(max_epochs=3))
    with pytest.raises(Exception, match="finetune.unfreeze_epoch is after the last epoch"):
        validate_config(config, "fit")
    CHECKS.remove(unfreeze_in_time)


def test_closest_key():
    assert closest("model.lrr", ["model.lr", "model.backbone"]) == "model.lr"
    assert closest("data.zzzz", ["model.lr"]) is None


def test_cli_error_path_and_debug_switch(tmp_path):
    """As a user meets it: exit non-zero, one message on stderr; the traceback only with --debug."""
    result = run_cli("fit", "--model.lrr=0.1", cwd=tmp_path, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "unknown config key 'model.lrr'. Did you mean 'model.lr'?" in result.stderr
    debug = run_cli("fit", "--model.lrr=0.1", "--debug", cwd=tmp_path, check=False)
    assert debug.returncode == 2 and "Traceback" in debug.stderr and "Did you mean 'model.lr'" in debug.stderr


def test_help_still_exits_zero(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--help"])
    assert exit_info.value.code in (0, None) and "--model" in capsys.readouterr().out
