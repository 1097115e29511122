"""On a GPU the NaN guard reads the loss flag one step late; it must still stop before any checkpoint."""

import pytest
import torch

from trainforge.errors import TemplateError
from trainforge.training.nonfinite import NonFiniteLossGuard


def test_pending_nonfinite_flag_stops_at_the_next_step_and_before_a_checkpoint():
    guard = NonFiniteLossGuard()
    guard._pending = (torch.tensor(True), torch.tensor(0.5), "at epoch 0, global step 4")
    guard.on_save_checkpoint(None, None, {})  # a finite loss lets the save through
    for hook in (
        lambda: guard.on_save_checkpoint(None, None, {}),
        lambda: guard.on_train_batch_start(None, None, None, 0),
    ):
        guard._pending = (torch.tensor(False), torch.tensor(float("nan")), "at epoch 0, global step 5")
        with pytest.raises(TemplateError, match="global step 5; the run was stopped and no checkpoint"):
            hook()
    assert guard._pending is None
