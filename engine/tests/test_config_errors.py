"""Config mistakes are refused before anything runs, naming the key, with one message and no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from jsonargparse import Namespace

from tests.conftest import CONFIGS, FAST, run_cli
from trainforge.data.digits import DigitsDataModule
from trainforge.errors import ConfigError, closest
from trainforge.launch import main
from trainforge.validation import CHECKS, config_check, known_backbone, validate_config

HINT = "(run again with --debug or TRAINFORGE_DEBUG=1 for the full traceback)"


def refusal(code: int, err: str, runs: Path) -> str:
    """The refusal as one string, after asserting its shape: exit 2, no traceback, one `error:` line (a
    config check's single problem may follow it as one `  - ` line), the --debug hint, nothing under runs/."""
    assert code == 2, err
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    errors = [i for i, line in enumerate(lines) if line.startswith("error:")]
    assert len(errors) == 1, err
    message = lines[errors[0] :]
    assert message[-1] == HINT, err
    problem = message[1:-1]
    assert not problem or (len(problem) == 1 and problem[0].startswith("  - ")), err
    left = sorted(runs.rglob("*")) if runs.exists() else []
    assert left == [], left
    return " ".join(line.strip() for line in message[:-1])


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
        (["--finetune.wise_evidence_p=0"], ["finetune.wise_evidence_p: ", "must be in (0, 1], got 0.0"]),
        (["--distill.alpha=2"], ["distill: need 0 <= alpha <= 1", "alpha=2.0"]),
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
    message = refusal(*cli(*args), tmp_path / "runs")
    for needle in needles:
        assert needle in message, (needle, message)


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (
            ["--trainer.max_epochs=two"],
            ["wrong type for 'trainer.max_epochs': expected an int or null (got 'two')"],
        ),
        (["--data.batch_size=1.5"], ["wrong type for 'data.batch_size': expected an int (got '1.5')"]),
        (["--seed_everything=abc"], ["'seed_everything': expected true/false or an int (got 'abc')"]),
        (
            ["--trainer.precision=fp16"],
            [
                "invalid value for 'trainer.precision'",
                "'16-mixed'",
                "'bf16-mixed'",
                "'32-true'",
                "(got 'fp16')",
            ],
        ),
        (
            ["--data.sampler=weird"],
            ["invalid value for 'data.sampler': expected 'balanced' or null (got 'weird')"],
        ),
        (
            ["--model.init_args.class_weights=foo"],
            [
                "invalid value for 'model.class_weights': expected 'balanced', a list of floats or null (got 'foo')"
            ],
        ),
        (
            ["--data.sampler_mode=oversampl"],
            [
                "'data.sampler_mode': expected one of 'oversample', 'undersample'",
                "Did you mean 'oversample'?",
            ],
        ),
        (["--nonfinite.action=explode"], ["'nonfinite.action': expected one of 'stop', 'skip', 'off'"]),
        (["--data.num_workers=many"], ["'data.num_workers': expected 'auto' or an int (got 'many')"]),
    ],
)
def test_wrong_type_or_value_names_the_key_and_what_is_expected(cli, tmp_path, args, needles):
    message = refusal(*cli(*args), tmp_path / "runs")
    for needle in needles:
        assert needle in message, (needle, message)


def test_wrong_value_in_a_config_file_names_the_key(cli, tmp_path):
    (tmp_path / "exp.yaml").write_text(
        "trainer:\n  precision: fp16\ndata:\n  init_args:\n    sampler: weird\n"
    )
    message = refusal(*cli("--config", str(tmp_path / "exp.yaml")), tmp_path / "runs")
    assert "'data.sampler': expected 'balanced' or null (got 'weird')" in message


@pytest.mark.parametrize(
    ("args", "key", "meant"),
    [
        (["--trainer.max_epoch=3"], "trainer.max_epoch", "trainer.max_epochs"),
        (["--trainer.max_e=3"], "trainer.max_e", "trainer.max_epochs"),
        (["--model.warmup=1"], "model.warmup", "model.warmup_epochs"),
        (["--model.init_args.warmup=1"], "model.warmup", "model.warmup_epochs"),
        (["--data.batch_siz=8"], "data.batch_siz", "data.batch_size"),
        (["--data.init_args.batch_siz=8"], "data.batch_siz", "data.batch_size"),
        (["--seed_every=1"], "seed_every", "seed_everything"),
        (["--ckpt=last.ckpt"], "ckpt", "ckpt_path"),
        (["--conf=exp.yaml"], "conf", "config"),
        (["--print_conf"], "print_conf", "print_config"),
    ],
)
def test_abbreviations_are_unknown_keys(cli, tmp_path, args, key, meant):
    """argparse would take a unique prefix for the full key; the CLI refuses it (allow_abbrev=False)."""
    message = refusal(*cli(*args), tmp_path / "runs")
    assert f"unknown config key '{key}'. Did you mean '{meant}'?" in message


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (
            ["--model.backbone=resnet999"],
            [
                "model.backbone=resnet999: not a timm model name",
                "resnet50",
                "resnet18",
                "timm.list_models('resnet*')",
            ],
        ),
        (["--model.backbone=ResNet-18"], ["model.backbone=ResNet-18", "Did you mean one of: resnet18,"]),
        (["--trainer.accelerator=tpux"], ["trainer.accelerator=tpux: expected one of auto, cpu,", "'tpu'?"]),
        (
            ["--trainer.strategy=dpp"],
            ["trainer.strategy=dpp: expected one of auto, ddp,", "Did you mean 'ddp'?"],
        ),
        (
            ["--trainer.gradient_clip_algorithm=foo"],
            ["trainer.gradient_clip_algorithm=foo: expected one of norm, value"],
        ),
        (["--trainer.devices=x"], ["trainer.devices=x: expected a count"]),
        (
            ["--checkpoint.mode=maxx"],
            ["checkpoint.mode=maxx: expected one of max, min", "Did you mean 'max'?"],
        ),
        (["--data.image_size=-5"], ["data.image_size=-5: the input side must be at least 1"]),
    ],
)
def test_impossible_value_is_refused_before_anything_is_built(cli, tmp_path, args, needles):
    """Values of the right type that the Trainer or the model would refuse only once built, after the run
    directory exists (a traceback, or a RuntimeError in the first batch for a negative image size)."""
    message = refusal(*cli(*args), tmp_path / "runs")
    assert message.startswith("error: invalid configuration, nothing was started:")
    for needle in needles:
        assert needle in message, (needle, message)


def test_backbone_names_timm_resolves_itself_pass_the_check():
    def config(backbone: str) -> Namespace:
        return Namespace(
            model=Namespace(class_path="trainforge.models.Model", init_args=Namespace(backbone=backbone))
        )

    for name in ("resnet18", "resnet18.a1_in1k", "hf-hub:timm/resnet18.a1_in1k", "local-dir:/models/r18"):
        assert list(known_backbone(config(name), "fit")) == [], name
    assert list(known_backbone(config("resnet999"), "fit"))


class SetupFails(DigitsDataModule):
    """A DataModule whose data cannot be found once the fit starts (in setup, after the run directory)."""

    def setup(self, stage: str | None = None) -> None:
        raise ConfigError("data.root=/nowhere: no such folder")


class InitFails(DigitsDataModule):
    """A DataModule that refuses its arguments when built (after the run directory, before the fit)."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        raise ConfigError("data.root=/nowhere: no such folder")


START_UP_FAILURES = [
    pytest.param(f"--data={__name__}.SetupFails", id="setup"),
    pytest.param(f"--data={__name__}.InitFails", id="init"),
]


@pytest.mark.parametrize("data", START_UP_FAILURES)
def test_fit_failing_at_start_up_is_one_line(cli, data):
    code, err = cli(data)
    assert code == 2 and "Traceback" not in err
    assert [line for line in err.splitlines() if line.startswith("error:")] == [
        "error: data.root=/nowhere: no such folder"
    ], err


@pytest.mark.parametrize("data", START_UP_FAILURES)
def test_fit_failing_at_start_up_leaves_no_run_directory(cli, tmp_path, data):
    refusal(*cli(data), tmp_path / "runs")


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
