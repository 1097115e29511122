"""Which config files make a run's configuration, and where the resolved one is saved.

Base files compose per concern (configs/trainer.yaml, callbacks.yaml, logger.yaml, data/, model/), then
`--experiment NAME` adds configs/experiments/NAME.yaml, then command-line overrides win.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.cli import SaveConfigCallback
from lightning.pytorch.loggers import WandbLogger

from template.gitinfo import git_commit

SUBCOMMANDS = ("fit", "validate", "test", "predict")
BASE_CONFIGS = ("trainer.yaml", "callbacks.yaml", "logger.yaml", "data/digits.yaml", "model/classifier.yaml")


def configs_dir() -> Path:
    """`$TEMPLATE_CONFIGS`, else ./configs, else the configs/ beside the package (an editable install)."""
    if os.environ.get("TEMPLATE_CONFIGS"):
        return Path(os.environ["TEMPLATE_CONFIGS"])
    local = Path.cwd() / "configs"
    return local if local.is_dir() else Path(__file__).resolve().parent.parent / "configs"


def expand_argv(argv: list[str], configs: Path) -> list[str]:
    """Turn `--experiment NAME` into its config file, placed before every other option so those win.

    For validate/test/predict given only `--ckpt_path` inside a run directory, that run's saved config
    is used, so `python -m template test --ckpt_path runs/x/y/checkpoints/last.ckpt` just works.
    """
    argv = list(argv)
    sub_index = next((i for i, a in enumerate(argv) if a in SUBCOMMANDS), None)
    if sub_index is None:
        return argv
    head, rest = argv[: sub_index + 1], argv[sub_index + 1 :]
    experiment = pop_value(rest, "--experiment")
    injected: list[str] = []
    if experiment is not None:
        path = configs / "experiments" / f"{experiment}.yaml"
        if not path.is_file():
            known = sorted(p.stem for p in (configs / "experiments").glob("*.yaml"))
            raise SystemExit(
                f"error: no experiment '{experiment}' ({path} not found). Known: {', '.join(known)}"
            )
        injected += ["--config", str(path), f"--run.experiment={experiment}"]
    elif argv[sub_index] != "fit" and not any(
        a in ("-c", "--config") or a.startswith("--config=") for a in rest
    ):
        ckpt = peek_value(rest, "--ckpt_path")
        run_config = Path(ckpt).resolve().parent.parent / "config.yaml" if ckpt else None
        if run_config is not None and run_config.is_file():
            injected += ["--config", str(run_config)]
    return head + injected + rest


def pop_value(args: list[str], name: str) -> str | None:
    value = peek_value(args, name)
    if value is None:
        return None
    for i, arg in enumerate(args):
        if arg == name:
            del args[i : i + 2]
            break
        if arg.startswith(name + "="):
            del args[i]
            break
    return value


def peek_value(args: list[str], name: str) -> str | None:
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


class SaveRunConfig(SaveConfigCallback):
    """Saves the resolved config in the run directory and logs it (with the git commit) to W&B.

    LightningCLI does not send the config to WandbLogger (#19728); evaluation commands save theirs under
    another name so they never overwrite the training config.
    """

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        stage = getattr(stage, "value", stage)
        if stage != "fit":
            self.config_filename = f"config_{stage}.yaml"
        super().setup(trainer, pl_module, stage)

    def save_config(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        config = self.parser.dump(self.config, skip_none=False, format="json")
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.experiment.config.update(
                    {"config": json.loads(config), "git_commit": git_commit()}, allow_val_change=True
                )
