"""Config checks run before anything is built: impossible values are refused, naming the key.

jsonargparse already refuses unknown keys and wrong types; these checks catch values of the right type that
cannot work (a negative learning rate, batch size 0, a warmup longer than training, ...).

Extension point: another module adds a check with the `config_check` decorator. A check receives the
subcommand's resolved config (a jsonargparse Namespace; read keys with `value(config, "a.b")`) and the
subcommand, and yields one message per problem, each naming its key, e.g.

    @config_check
    def swa_starts_in_time(config, subcommand):
        start, epochs = value(config, "swa.swa_epoch_start"), value(config, "trainer.max_epochs")
        if isinstance(start, int) and epochs and start >= epochs:
            yield f"swa.swa_epoch_start={start} is not before the last epoch (trainer.max_epochs={epochs})"

The module that defines a check must be imported before the CLI parses (import it from its package).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from trainforge.errors import ConfigError

Check = Callable[[Any, str], Iterable[str]]
CHECKS: list[Check] = []
_MISSING = object()


def config_check(check: Check) -> Check:
    """Register `check`; it runs on every command before the trainer, model and data are built."""
    CHECKS.append(check)
    return check


def value(config: Any, key: str, default: Any = None) -> Any:
    """`config[key]` for a dotted key; subclass groups may be given without `init_args` (`model.lr`)."""
    for candidate in (key, _with_init_args(key)):
        node: Any = config
        for part in candidate.split("."):
            node = _child(node, part)
            if node is _MISSING:
                break
        if node is not _MISSING:
            return node
    return default


def _with_init_args(key: str) -> str:
    head, _, rest = key.partition(".")
    return f"{head}.init_args.{rest}" if rest and not rest.startswith("init_args") else key


def _child(node: Any, part: str) -> Any:
    if node is None:
        return _MISSING
    if isinstance(node, dict):
        return node.get(part, _MISSING)
    return getattr(node, part, _MISSING) if hasattr(node, part) else _MISSING


def validate_config(config: Any, subcommand: str) -> None:
    """Run every registered check; raise one TemplateError listing all problems."""
    problems = [message for check in CHECKS for message in check(config, subcommand)]
    if len(problems) == 1:
        raise ConfigError(f"invalid configuration, nothing was started: {problems[0]}")
    if problems:
        lines = "\n".join(f"  - {p}" for p in problems)
        raise ConfigError(f"invalid configuration, nothing was started:\n{lines}")


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


# ------------------------------------------------------------------------------- built-in checks
@config_check
def positive_learning_rate(config: Any, subcommand: str) -> Iterable[str]:
    lr = value(config, "model.lr")
    if _number(lr) and lr <= 0:
        yield f"model.lr={lr}: the learning rate must be positive (e.g. --model.lr=0.001)"


@config_check
def training_length(config: Any, subcommand: str) -> Iterable[str]:
    epochs = value(config, "trainer.max_epochs")
    if _number(epochs) and epochs < -1:
        yield f"trainer.max_epochs={epochs}: use a positive number of epochs (-1 means no limit)"
    if _number(epochs) and epochs == 0 and subcommand == "fit":
        yield "trainer.max_epochs=0: nothing would be trained; use at least 1"
    steps = value(config, "trainer.max_steps")
    if _number(steps) and steps < -1:
        yield f"trainer.max_steps={steps}: use a positive number of steps (-1 means no limit)"


@config_check
def positive_batch_size(config: Any, subcommand: str) -> Iterable[str]:
    batch_size = value(config, "data.batch_size")
    if _number(batch_size) and batch_size < 1:
        yield f"data.batch_size={batch_size}: the batch size must be at least 1 (`make bs-find` finds one)"


@config_check
def enough_classes(config: Any, subcommand: str) -> Iterable[str]:
    n = value(config, "model.num_classes")  # only for a model used without a DataModule's task
    if _number(n) and n < 2:
        yield f"model.num_classes={n}: a multiclass model needs at least 2 classes"


@config_check
def positive_image_size(config: Any, subcommand: str) -> Iterable[str]:
    # Caught here, not by the resize in the first training batch (a RuntimeError after the run started).
    size = value(config, "data.image_size")
    if _number(size) and size < 1:
        yield f"data.image_size={size}: the input side must be at least 1 pixel (e.g. --data.image_size=32)"


@config_check
def lightning_choices(config: Any, subcommand: str) -> Iterable[str]:
    """Names the Trainer and ModelCheckpoint check only when built (their types say `str`): refused here, before
    the run directory exists, instead of a ValueError traceback."""
    from lightning.pytorch.accelerators import AcceleratorRegistry
    from lightning.pytorch.strategies import StrategyRegistry

    accelerators = ["auto", "gpu", *AcceleratorRegistry.available_accelerators()]
    strategies = ["auto", *StrategyRegistry.available_strategies()]
    strategy_examples = "auto, ddp, ddp_spawn, fsdp, deepspeed or another `StrategyRegistry` name"
    choices = {
        # key: (valid names, what the message lists (None: all of them), whether Lightning lowercases first)
        "trainer.accelerator": (accelerators, None, False),
        "trainer.strategy": (strategies, strategy_examples, True),
        "trainer.gradient_clip_algorithm": (["norm", "value"], None, True),
        "checkpoint.mode": (["min", "max"], None, False),
    }
    for key, (valid, listed, folded) in choices.items():
        name = value(config, key)
        if isinstance(name, str) and (name.lower() if folded else name) not in valid:
            listed = listed or ", ".join(sorted(set(valid)))
            yield f"{key}={name}: expected one of {listed}{_did_you_mean(name, valid)}"
    devices = value(config, "trainer.devices")
    if isinstance(devices, str) and not re.fullmatch(r"auto|-?\d+|(\d+,)+\d*", devices.replace(" ", "")):
        yield f"trainer.devices={devices}: expected a count (2), -1 (all), 'auto' or device ids ('0,1' or [0, 1])"


def _did_you_mean(name: str, valid: Iterable[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name.lower(), list(valid), n=1, cutoff=0.6)
    return f". Did you mean '{close[0]}'?" if close else ""


@config_check
def known_backbone(config: Any, subcommand: str) -> Iterable[str]:
    """A timm name the default `build_backbone` can build (a project's own hook may take any name)."""
    import timm
    from timm.models import parse_model_name

    from trainforge.models import Model

    name, class_path = value(config, "model.backbone"), value(config, "model.class_path")
    if not isinstance(name, str) or not isinstance(class_path, str):
        return
    try:
        module, _, cls_name = class_path.rpartition(".")
        cls = getattr(__import__(module, fromlist=[cls_name]), cls_name)
    except (ImportError, AttributeError):
        return  # the parser names a class it cannot import
    if getattr(cls, "build_backbone", None) is not Model.build_backbone:
        return
    source, _ = parse_model_name(name)
    if source is not None or timm.is_model(name):  # `hf-hub:`/`local-dir:` names are resolved by timm itself
        return
    yield f"model.backbone={name}: not a timm model name.{_close_backbones(name)}"


def _close_backbones(name: str) -> str:
    """ " Did you mean: a, b, c? ..." : the family the name starts (`vit_base` -> `vit_base_patch16_224`),
    then the names most alike (`resnet999` -> resnet50, `ResNet-18` -> resnet18)."""
    import difflib

    import timm

    names = timm.list_models()
    typed = (
        name.split(".")[0].lower().replace("-", "_")
    )  # the arch without a pretrained tag, as timm spells it
    family = [n for n in names if n.startswith(typed)]
    alike = difflib.get_close_matches(typed, names, n=5, cutoff=0.6)
    close = list(dict.fromkeys(family[:3] + alike))[:5]
    stem = re.match(r"[a-z]+", typed)
    listing = (
        f"`timm.list_models('{stem[0]}*')` lists that family" if stem else "`timm.list_models()` lists them"
    )
    return f" Did you mean one of: {', '.join(close)}? ({listing})" if close else f" ({listing})"


@config_check
def warmup_within_training(config: Any, subcommand: str) -> Iterable[str]:
    warmup, epochs = value(config, "model.warmup_epochs"), value(config, "trainer.max_epochs")
    if _number(warmup) and warmup < 0:
        yield f"model.warmup_epochs={warmup}: the warmup cannot be negative"
    if subcommand == "fit" and _number(warmup) and _number(epochs) and epochs > 0 and warmup > epochs:
        yield (
            f"model.warmup_epochs={warmup} is longer than training (trainer.max_epochs={epochs}); "
            "shorten the warmup or train longer"
        )
