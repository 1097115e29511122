"""WiSE-FT's choice on the selection split: the best score, or the fine-tune unless a sign test says otherwise."""

from __future__ import annotations

from types import SimpleNamespace

import lightning as L
import pytest
import torch
from lightning.pytorch.strategies import SingleDeviceStrategy
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from trainforge.errors import ConfigError
from trainforge.tasks import Multiclass
from trainforge.training.finetuning import Finetuning
from trainforge.training.wise import choose, sign_test_p

N = 90  # the size of a 15% selection split of 600 images


class OneHotPicker(L.LightningModule):
    """Sample i is the one-hot vector e_i, so column i of the weight decides sample i's class alone."""

    def __init__(self) -> None:
        super().__init__()
        self.task = Multiclass(names=["a", "b"])
        self.loss_fn = nn.CrossEntropyLoss()
        self.linear = nn.Linear(N, 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


def weights_right_on(right: set[int]) -> dict[str, torch.Tensor]:
    """Every label is 0; sample i is classified right (class 0) when i is in `right`."""
    w = torch.zeros(2, N)
    for i in range(N):
        w[0 if i in right else 1, i] = 1.0
    return {"linear.weight": w}


def pick(start_only: int, end_only: int, evidence_p: float) -> dict:
    both = set(range(20, 90))  # right under both: samples 0-19 are right under at most one of them
    start = weights_right_on(both | set(range(start_only)))
    end = weights_right_on(both | set(range(10, 10 + end_only)))
    module = OneHotPicker()
    module.load_state_dict(end)
    loader = DataLoader(TensorDataset(torch.eye(N), torch.zeros(N, dtype=torch.long)), batch_size=32)
    trainer = SimpleNamespace(
        datamodule=SimpleNamespace(val_dataloader=lambda: loader),
        strategy=SingleDeviceStrategy(device=torch.device("cpu")),
    )
    record = choose(trainer, module, start, [0.0, 1.0], evidence_p)
    chosen = start if record["alpha"] == 0.0 else end
    assert torch.equal(module.linear.weight, chosen["linear.weight"])  # what is loaded is what is reported
    return record


def test_sign_test_p_is_the_exact_binomial_tail():
    assert sign_test_p(3, 1) == pytest.approx(5 / 16)
    assert sign_test_p(8, 0) == pytest.approx(1 / 256)
    assert sign_test_p(7, 1) == pytest.approx(9 / 256)
    assert sign_test_p(0, 0) == 1.0 and sign_test_p(0, 4) == 1.0


def test_the_probe_beating_the_fine_tune_by_two_samples_is_noise_with_evidence_p():
    # The probe gets 3 samples right that the fine-tune misses, the fine-tune 1 the other way: 73 vs 71 of 90.
    plain = pick(start_only=3, end_only=1, evidence_p=1.0)
    assert plain["alpha"] == 0.0 and "test" not in plain  # the best score alone: the probe
    assert plain["val"]["0.0"]["score"] == pytest.approx(73 / 90)
    assert plain["val"]["1.0"]["score"] == pytest.approx(71 / 90)
    kept = pick(start_only=3, end_only=1, evidence_p=0.3)  # finetune.yaml's threshold
    assert kept["alpha"] == 1.0  # p = 5/16: the fine-tune stays
    assert kept["test"] == {
        "a": 0.0,
        "against": 1.0,
        "wins": 3,
        "losses": 1,
        "p": pytest.approx(0.3125, abs=1e-6),
    }


def test_a_clear_probe_lead_still_replaces_the_fine_tune():
    record = pick(start_only=8, end_only=0, evidence_p=0.05)
    assert record["alpha"] == 0.0 and record["test"]["p"] == pytest.approx(1 / 256, abs=1e-6)
    # 6 to 3 (p = 0.254): the X-ray case in docs/recipe-study.md where the kept fine-tune lost 4 test images.
    lead = pick(start_only=6, end_only=3, evidence_p=0.3)
    assert lead["alpha"] == 0.0 and (lead["test"]["wins"], lead["test"]["losses"]) == (6, 3)
    assert pick(start_only=6, end_only=3, evidence_p=0.05)["alpha"] == 1.0


def test_a_fine_tune_that_scores_best_needs_no_test():
    record = pick(start_only=0, end_only=2, evidence_p=0.3)
    assert record["alpha"] == 1.0 and "test" not in record


def test_evidence_p_outside_0_1_is_refused():
    with pytest.raises(ConfigError, match=r"finetune.wise_evidence_p: .*\(0, 1\], got 0.0"):
        Finetuning(wise_evidence_p=0.0)
