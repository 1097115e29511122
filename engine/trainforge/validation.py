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
    multi_label = bool(value(config, "model.multi_label", False) or value(config, "data.multi_label", False))
    for key in ("data.num_classes", "model.num_classes"):
        n = value(config, key)
        if _number(n) and n < (1 if multi_label else 2):
            yield f"{key}={n}: a classifier needs at least 2 classes (or multi-label with at least 1)"


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
