"""Which config files make a run's configuration, and where the resolved one is saved.

Two layers: the project's `configs/` (or `$TRAINFORGE_CONFIGS`) and the engine's built-in `configs/`
(package data). A file is looked up in the project first, so a project overrides any engine file and
inherits the rest (e.g. `--experiment swa` works in every project). Base files compose per concern
(trainer.yaml, callbacks.yaml, logger.yaml, data.yaml, model.yaml), then `--experiment NAME` adds
experiments/NAME.yaml, then command-line overrides win.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import yaml
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.cli import SaveConfigCallback
from lightning.pytorch.loggers import WandbLogger

from trainforge.errors import TemplateError
from trainforge.gitinfo import git_commit

SUBCOMMANDS = ("fit", "validate", "test", "predict")
BASE_CONFIGS = ("trainer.yaml", "callbacks.yaml", "logger.yaml", "data.yaml", "model.yaml")
BUILTIN_CONFIGS = Path(__file__).resolve().parent / "configs"
CONFIGS_ENV = "TRAINFORGE_CONFIGS"


def project_configs() -> Path | None:
    """`$TRAINFORGE_CONFIGS`, else ./configs when it exists; None runs on the engine's configs alone."""
    if os.environ.get(CONFIGS_ENV):
        return Path(os.environ[CONFIGS_ENV])
    local = Path.cwd() / "configs"
    return local if local.is_dir() else None


def config_layers() -> list[Path]:
    """Folders searched for a config file, the project's first."""
    project = project_configs()
    return (
        [project, BUILTIN_CONFIGS]
        if project is not None and project != BUILTIN_CONFIGS
        else [BUILTIN_CONFIGS]
    )


def find_config(relative: str) -> Path | None:
    """The project's copy of `relative` (e.g. `experiments/swa.yaml`), else the engine's, else None."""
    for layer in config_layers():
        if (layer / relative).is_file():
            return layer / relative
    return None


def known_experiments() -> list[str]:
    return sorted({p.stem for layer in config_layers() for p in (layer / "experiments").glob("*.yaml")})


def base_configs(argv: list[str]) -> list[str]:
    """The base files of a run, except a base data/model file whose class the run replaces.

    jsonargparse keeps every init argument the new class also accepts when `class_path` changes, so an
    experiment switching `data` to its own class would silently inherit, e.g., the digits' batch size.
    """
    replaced = {group for group in ("data", "model") if _replaces_class(argv, group)}
    paths = [find_config(name) for name in BASE_CONFIGS if name.removesuffix(".yaml") not in replaced]
    return [str(p) for p in paths if p is not None]


def _replaces_class(argv: list[str], group: str) -> bool:
    """A config file sets `<group>.class_path`, or the command line does before any other `<group>.` key."""
    for i, arg in enumerate(argv):
        if arg.startswith((f"--{group}=", f"--{group}.class_path")) or arg == f"--{group}":
            return True
        if arg.startswith(f"--{group}."):
            return False  # keys for the base class come first: keep the base file
        if arg in ("-c", "--config") and i + 1 < len(argv) or arg.startswith("--config="):
            path = Path(arg.split("=", 1)[1] if "=" in arg else argv[i + 1])
            section = _yaml(path).get(group)
            if isinstance(section, str) or (isinstance(section, dict) and "class_path" in section):
                return True
    return False


def _yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) if path.is_file() else None
    except yaml.YAMLError:
        return {}  # the parser reports the broken file itself, naming it
    return data if isinstance(data, dict) else {}


def expand_argv(argv: list[str]) -> list[str]:
    """Turn `--experiment NAME` into its config file, placed before every other option so those win.

    For validate/test/predict given only `--ckpt_path` inside a run directory, that run's saved config
    is used, so `python -m trainforge test --ckpt_path runs/x/y/checkpoints/last.ckpt` just works.
    """
    argv = list(argv)
    sub_index = next((i for i, a in enumerate(argv) if a in SUBCOMMANDS), None)
    if sub_index is None:
        return argv
    head, rest = argv[: sub_index + 1], argv[sub_index + 1 :]
    experiment = pop_value(rest, "--experiment")
    injected: list[str] = []
    if experiment is not None:
        path = find_config(f"experiments/{experiment}.yaml")
        if path is None:
            raise TemplateError(
                f"no experiment '{experiment}' (no experiments/{experiment}.yaml in "
                f"{' or '.join(str(p) for p in config_layers())}). Known: {', '.join(known_experiments())}"
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
