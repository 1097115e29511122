"""WiSE-FT's choice on the selection split: the best score, or the fine-tune unless a sign test says otherwise."""

from __future__ import annotations

import json
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from lightning.pytorch.strategies import SingleDeviceStrategy
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from tests.conftest import run_cli
from tests.transfer_helpers import make_folder, save_timm_weights
from trainforge.errors import ConfigError
from trainforge.tasks import Multiclass
from trainforge.training.finetuning import Finetuning
from trainforge.training.linear_probe import init_head_by_linear_probe
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


def pick(start_only: int, end_only: int, evidence_p: float, keep: str = "finetune") -> dict:
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
    record = choose(trainer, module, start, [0.0, 1.0], evidence_p, keep)
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


def test_keep_probe_reports_the_fine_tune_only_when_the_split_shows_it_ahead():
    # The fine-tune ahead 3 to 1 (p = 5/16): noise, so the probe (a = 0) stays; by default the fine-tune would.
    safe = pick(start_only=1, end_only=3, evidence_p=0.3, keep="probe")
    assert safe["alpha"] == 0.0 and safe["test"]["a"] == 1.0 and safe["test"]["against"] == 0.0
    assert (safe["test"]["wins"], safe["test"]["losses"]) == (3, 1)
    assert pick(start_only=1, end_only=3, evidence_p=0.3)["alpha"] == 1.0
    # Ahead 8 to 0 (p = 1/256): the fine-tune is reported.
    assert pick(start_only=0, end_only=8, evidence_p=0.3, keep="probe")["alpha"] == 1.0


def test_evidence_p_above_one_half_asks_for_a_majority_of_the_disputed_images():
    # wise_evidence_p 0.51 (docs/recipe-study.md, safe-probe-majority): any lead on the images the two disagree
    # on replaces the probe (2 to 1: p = 1/2); a tie (2 to 2: p = 11/16) or a deficit keeps it.
    lead = pick(start_only=1, end_only=2, evidence_p=0.51, keep="probe")
    assert lead["alpha"] == 1.0 and lead["test"]["p"] == pytest.approx(0.5, abs=1e-6)
    tie = pick(start_only=2, end_only=2, evidence_p=0.51, keep="probe")
    assert tie["alpha"] == 0.0
    assert pick(start_only=2, end_only=1, evidence_p=0.51, keep="probe")["alpha"] == 0.0
    assert pick(start_only=1, end_only=2, evidence_p=0.3, keep="probe")["alpha"] == 0.0  # p = 1/2: not enough


def test_probe_cv_folds_below_two_is_refused():
    with pytest.raises(ConfigError, match=r"finetune.probe_cv_folds: .*2 folds or more, got 1"):
        Finetuning(probe_cv_folds=1)


def probe_setup(val_labels_flipped: bool) -> tuple[SimpleNamespace, SimpleNamespace]:
    """Separable 2-D training features (feature 0 = +-1 by class); a val split whose labels are the reverse."""
    gen = torch.Generator().manual_seed(0)
    y = torch.arange(40) % 2
    x = torch.stack([y.float() * 2 - 1, torch.randn(40, generator=gen) * 0.1], 1)
    val_y = 1 - y[:10] if val_labels_flipped else y[:10]
    data = {"train": TensorDataset(x, y), "val": TensorDataset(x[:10], val_y), "test": TensorDataset(x, y)}
    model = SimpleNamespace(
        task=Multiclass(names=["a", "b"]), head=nn.Sequential(nn.Linear(2, 2)), device=torch.device("cpu"),
        backbone=Features(),
    )  # fmt: skip
    return model, SimpleNamespace(eval_view=lambda split: data.get(split))


class Features(nn.Module):
    """The features are the inputs; the unused parameter tells extract_features the device."""

    def __init__(self) -> None:
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def test_cross_validated_c_ignores_the_selection_split_and_reports_cv_accuracy():
    # Every C classifies the separable data right, so the choice falls to the loss. On the reversed val split
    # the most confident probe (C=1) has the highest loss: val picks C=0.01. Cross-validation on train
    # picks C=1 (lowest held-out loss), whatever val says, and reports its cross-validated accuracy, 1.0.
    model, dm = probe_setup(val_labels_flipped=True)
    assert init_head_by_linear_probe(model, dm, [0.01, 1.0])["c"] == 0.01
    for flipped in (True, False):
        model, dm = probe_setup(val_labels_flipped=flipped)
        report = init_head_by_linear_probe(model, dm, [0.01, 1.0], cv_folds=5)
        assert report["c"] == 1.0 and report["cv/acc"] == pytest.approx(1.0)
        assert report["selected_on"] == "5-fold cross-validation on train"
        assert report["test/acc"] == pytest.approx(1.0)  # the final probe is fitted on all of train


@pytest.mark.slow
def test_safe_fallback_and_cross_validated_probe_through_the_cli(tmp_path):
    make_folder(tmp_path / "imgs", {"train": 12, "test": 3})
    save_timm_weights(tmp_path / "w.safetensors")
    run_cli(
        "fit", "--experiment", "finetune", "--run.name=safe", f"--run.root={tmp_path / 'runs'}",
        f"--data.root={tmp_path / 'imgs'}", f"--model.weights={tmp_path / 'w.safetensors'}",
        "--model.backbone=resnet10t", "--data.image_size=32", "--data.num_workers=0", "--trainer.max_epochs=1",
        "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
        "--finetune.probe_cv_folds=3", "--finetune.wise_keep=probe", cwd=tmp_path,
    )  # fmt: skip
    summary = json.loads((tmp_path / "runs" / "finetune" / "safe" / "summary.json").read_text())
    probe = summary["linear_probe"]
    assert probe["selected_on"] == "3-fold cross-validation on train" and 0 <= probe["cv/acc"] <= 1
    assert probe["c"] in (0.01, 0.1, 1.0)  # finetune.yaml's candidates
    wise = summary["wise"]
    best = max(wise["val"], key=lambda a: (wise["val"][a]["score"], -wise["val"][a]["loss"], float(a)))
    if float(best) == 0.0:
        assert wise["alpha"] == 0.0 and "test" not in wise
    else:  # the fine-tune scored best: it is reported only if the sign test against the probe says so
        assert wise["test"]["against"] == 0.0 and wise["test"]["a"] == float(best)
        assert wise["alpha"] == (float(best) if wise["test"]["p"] < 0.3 else 0.0)
    assert summary["selection"]["value"] == pytest.approx(wise["val"][str(float(wise["alpha"]))]["score"])
