"""EMA of the weights on Lightning's `EMAWeightAveraging` (2.6), and which weights a checkpoint holds.

Lightning validates with the averaged weights (swapped in for each validation epoch), saves them as the
checkpoint's `state_dict` and keeps the live training weights under `current_model_state`. So:
- export, `test`, `predict` and `load_from_checkpoint` read `state_dict`: the EMA weights, on purpose;
- resuming `fit` restores the live weights into the model and the EMA into the callback (its
  `on_load_checkpoint`), so training continues from where it stopped, not from the average.
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch.callbacks import EMAWeightAveraging

from trainforge.training.components import refuse


class EMA(EMAWeightAveraging):
    """EMA of weights and BatchNorm buffers, updated after every optimizer step from `start_step` on.

    Args:
        decay: Weight of the old average per update (0.999 ~ the last 1,000 steps).
        start_step: First optimizer step that updates the average (earlier weights are noise).
    """

    def __init__(self, decay: float = 0.999, start_step: int = 0, every_n_steps: int = 1) -> None:
        if not 0 < decay < 1:
            raise refuse(
                "EMA.decay", f"must be in (0, 1), got {decay}", "use e.g. 0.999 (about the last 1,000 steps)"
            )
        super().__init__(decay=decay, update_starting_at_step=start_step, update_every_n_steps=every_n_steps)


def averaged_state_dict(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """The weights to export: the EMA (a checkpoint written with EMA keeps them in `state_dict`)."""
    return checkpoint["state_dict"]


def live_state_dict(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """The training weights of a checkpoint written with EMA (its `state_dict` otherwise)."""
    return checkpoint.get("current_model_state", checkpoint["state_dict"])
