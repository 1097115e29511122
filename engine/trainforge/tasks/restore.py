"""A task restored from a config or a checkpoint. Apart from base.py because it knows the kinds (the
class-count fallback builds a Multiclass), which base.py, imported by every kind, must not."""

from __future__ import annotations

import importlib
from typing import Any

from trainforge.errors import TemplateError
from trainforge.tasks.base import Task
from trainforge.tasks.classification import Multiclass


def task_from_config(config: Task | dict[str, Any] | None, num_classes: int | None = None) -> Task:
    """A Task from itself, its `to_config()` dict (what checkpoints hold), or, for older configs, a class count."""
    if isinstance(config, Task):
        return config
    if isinstance(config, dict) and "class_path" in config:
        module, _, name = config["class_path"].rpartition(".")
        cls = getattr(importlib.import_module(module), name)
        return cls(**config.get("init_args", {}))
    if config is None and num_classes is not None:
        return Multiclass([str(i) for i in range(num_classes)])
    raise TemplateError(
        f"no task: the model needs the data's task (linked by the CLI) or num_classes; got {config!r}"
    )
