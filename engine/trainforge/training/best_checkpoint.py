"""The best-k checkpoint callback, with ties on the monitored value going to the later checkpoint.

Lightning's ModelCheckpoint ranks with a strict comparison and picks the best with `max`/`min`, which
return the first of equal values: when validation saturates (the digits example reaches val/acc 1.0 at
several epochs) it reports the earliest of the tied epochs, the least trained. Here a value equal to the
k-th best enters the top k (evicting the oldest of the tied), and among tied best files the latest is
reported. `save_top_k` keeps its meaning: at most k files. summary.json's `best` says which epoch was
chosen and why (`summary_fields`, read by finish.py).
"""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import Tensor


class BestCheckpoint(ModelCheckpoint):
    """ModelCheckpoint whose ties on the monitored value go to the later checkpoint."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.history: list[tuple[int, int, float]] = []  # (epoch, step, monitored value) per ranking
        self.saved_at: dict[str, tuple[int, int]] = {}  # checkpoint file -> (epoch, step) it holds

    def check_monitor_top_k(self, trainer: Any, current: Tensor | None = None) -> bool:
        if current is None or self.save_top_k == -1 or len(self.best_k_models) < self.save_top_k:
            return super().check_monitor_top_k(trainer, current)
        at_least = {"min": torch.le, "max": torch.ge}[self.mode]
        better_or_tied = bool(at_least(current, self.best_k_models[self.kth_best_model_path]))
        return trainer.strategy.reduce_boolean_decision(better_or_tied)

    def _save_topk_checkpoint(self, trainer: Any, monitor_candidates: dict[str, Tensor]) -> None:
        current = monitor_candidates.get(self.monitor) if self.monitor else None
        if current is not None and self.save_top_k != 0:
            self.history.append((trainer.current_epoch, trainer.global_step, float(current)))
        super()._save_topk_checkpoint(trainer, monitor_candidates)

    def _save_checkpoint(self, trainer: Any, filepath: str) -> None:
        # Lightning sets `best_model_path` just before this save (the file holds it in its callback state),
        # choosing the first of tied values: make it the latest of them first.
        self._prefer_latest()
        self.saved_at = {path: at for path, at in self.saved_at.items() if path in self.best_k_models}
        self.saved_at[filepath] = (trainer.current_epoch, trainer.global_step)
        super()._save_checkpoint(trainer, filepath)

    def _prefer_latest(self) -> None:
        if self.best_model_score is None or self.best_model_path not in self.best_k_models:
            return  # nothing ranked yet, or a feature reported other weights (report_weights: SWA, WiSE-FT)
        # best_k_models keeps insertion order, i.e. the order the files were saved in.
        tied = [path for path, value in self.best_k_models.items() if bool(value == self.best_model_score)]
        if tied:
            self.best_model_path = tied[-1]

    @property
    def state_key(self) -> str:
        # Keyed as Lightning's ModelCheckpoint, so a run started before this class resumes its best-k state.
        return super().state_key.replace(type(self).__qualname__, ModelCheckpoint.__qualname__, 1)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "history": self.history, "saved_at": self.saved_at}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.history = [tuple(entry) for entry in state_dict.get("history", [])]
        self.saved_at = dict(state_dict.get("saved_at", {}))

    def summary_fields(self) -> dict[str, Any]:
        """summary.json's `best`: the checkpoint ranked best, its epoch and step, and the rule that chose it."""
        if not self.monitor or self.best_model_score is None or self.save_top_k == 0:
            return {}
        value = float(self.best_model_score)
        epoch, step = self.saved_at.get(self.best_model_path, (None, None))
        tied = [e for e, _, v in self.history if v == value]
        if epoch is None:  # report_weights (SWA, WiSE-FT, ...) replaced the ranked checkpoint afterwards
            rule = "set after ranking by a training feature, not by the monitored value"
        elif len(tied) > 1:
            rule = f"latest of {len(tied)} validations tied at {value:g} (epochs {', '.join(map(str, tied))})"
        else:
            rule = f"the single {'highest' if self.mode == 'max' else 'lowest'} {self.monitor}"
        return {
            "best": {
                "path": self.best_model_path,
                "epoch": epoch,
                "step": step,
                "monitor": self.monitor,
                "mode": self.mode,
                "value": value,
                "rule": rule,
            }
        }
