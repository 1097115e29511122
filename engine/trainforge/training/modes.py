"""Evaluate a module for a moment without losing the train/eval mode of its submodules.

`module.train(was_training)` after a `module.eval()` sets every submodule to the same mode, which undoes
BatchNorm layers kept in eval mode on purpose (`bn_eval`, frozen stages). Lightning's own `_ModuleMode`
does this for its loops but is private, hence these few lines.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn


@contextmanager
def evaluating(module: nn.Module) -> Iterator[nn.Module]:
    """`module` in eval mode inside the block; each submodule's own mode restored after it."""
    modes = {m: m.training for m in module.modules()}
    module.eval()
    try:
        yield module
    finally:
        for m, training in modes.items():
            m.training = training
