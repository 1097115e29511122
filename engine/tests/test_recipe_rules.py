"""Selection rules replayed on a run's recorded WiSE-FT candidates give what a run with those options reports."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch.strategies import SingleDeviceStrategy
from torch.utils.data import DataLoader, TensorDataset

from tests.test_wise_selection import N, OneHotPicker, weights_right_on
from trainforge.errors import TemplateError
from trainforge.tools.recipe_rules import check_own_choice, check_rules, replay
from trainforge.training.wise import audit, choose, interpolate


def setting(start_only: int, end_only: int) -> tuple[SimpleNamespace, OneHotPicker, dict, dict]:
    """The probe (start) and the fine-tune (end) disagree on samples 0-19 of the selection split; on the
    reported split (the same one-hot inputs, labels flipped on samples 40-59) every candidate differs."""
    both = set(range(20, 90))
    start = weights_right_on(both | set(range(start_only)))
    end = weights_right_on(both | set(range(10, 10 + end_only)))
    val = DataLoader(TensorDataset(torch.eye(N), torch.zeros(N, dtype=torch.long)), batch_size=32)
    labels = torch.zeros(N, dtype=torch.long)
    labels[40:60] = 1
    test = DataLoader(TensorDataset(torch.eye(N), labels), batch_size=32)
    trainer = SimpleNamespace(
        datamodule=SimpleNamespace(val_dataloader=lambda: val, test_dataloader=lambda: test),
        strategy=SingleDeviceStrategy(device=torch.device("cpu")),
    )
    module = OneHotPicker()
    module.load_state_dict(end)
    return trainer, module, start, end


def reported_acc(module: OneHotPicker, weights: dict, loader: DataLoader) -> float:
    module.load_state_dict(weights)
    x, y = next(iter(DataLoader(loader.dataset, batch_size=N)))
    return float((module(x).argmax(1) == y).float().mean())


@pytest.mark.parametrize(
    ("start_only", "end_only", "alphas", "evidence_p", "keep"),
    [
        (3, 1, [0.0, 1.0], 0.3, "finetune"),  # a 3-1 probe lead is noise: the fine-tune stays
        (8, 0, [0.0, 1.0], 0.05, "finetune"),  # a clear probe lead replaces it
        (0, 2, [0.0, 1.0], 1.0, "finetune"),
        (1, 3, [0.0, 0.5, 1.0], 0.3, "probe"),  # a 3-1 fine-tune lead is noise: the probe stays
        (0, 8, [0.0, 0.5, 1.0], 0.3, "probe"),  # a clear fine-tune lead is taken
    ],
)
def test_replaying_the_recorded_candidates_chooses_and_reports_what_the_run_does(
    start_only, end_only, alphas, evidence_p, keep
):
    trainer, module, start, end = setting(start_only, end_only)
    record = audit(trainer, module, start, alphas)
    # The audit leaves the weights as they were.
    assert torch.equal(module.linear.weight, end["linear.weight"])
    chosen = choose(trainer, module, start, alphas, evidence_p, keep)
    summary = {"wise": chosen, "wise_audit": record}
    replayed = replay(summary, {"alphas": alphas, "keep": keep, "evidence_p": evidence_p}, "run")
    assert replayed["alpha"] == chosen["alpha"] and replayed["test"] == chosen.get("test")
    weights = interpolate(start, end, chosen["alpha"])
    assert replayed["acc"] == pytest.approx(
        reported_acc(module, weights, trainer.datamodule.test_dataloader())
    )
    assert replayed["selection_acc"] == pytest.approx(chosen["val"][str(chosen["alpha"])]["score"])
    assert replayed["optimism"] == pytest.approx(replayed["selection_acc"] - replayed["acc"], abs=1e-6)
    options = {"wise_alphas": alphas, "wise_keep": keep, "wise_evidence_p": evidence_p}
    check_own_choice(summary, options, "run")  # the run's own rule gives back its own choice
    other = "probe" if keep == "finetune" else "finetune"
    swapped = {"alphas": alphas, "keep": other, "evidence_p": evidence_p}
    if replay(summary, swapped, "run")["alpha"] != chosen["alpha"]:
        with pytest.raises(TemplateError, match="replaying the run's own selection rule gives a ="):
            check_own_choice(summary, {**options, "wise_keep": other}, "run")


def test_a_rule_needs_every_a_it_uses_recorded():
    trainer, module, start, _ = setting(2, 2)
    summary = {"wise_audit": audit(trainer, module, start, [0.0, 1.0])}
    with pytest.raises(TemplateError, match=r"run: summary.json has no wise_audit for a = 0.5; run the base"):
        replay(summary, {"alphas": [0, 0.5, 1], "keep": "probe", "evidence_p": 0.3}, "run")


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ({"default": {"base": "default"}}, "rule `default` has the name of a recipe"),
        ({"safe": {"base": "other"}}, "rule `safe`: base `other` is not a recipe (it has: default)"),
        ({"safe": {"base": "default", "keep": "best"}}, "keep must be finetune or probe, got 'best'"),
        ({"safe": {"base": "default", "alpha": [0]}}, "rule `safe` must map base (a recipe)"),
        ({"safe": [0, 1]}, "rule `safe` must map base (a recipe)"),
    ],
)
def test_bad_rules_are_refused_naming_the_file_and_rule(rules, message):
    with pytest.raises(TemplateError, match=r"study.yaml: ") as error:
        check_rules(rules, {"default": []}, "study.yaml")
    assert message in str(error.value)


def test_rules_default_to_plain_best_of_probe_and_fine_tune():
    rules = check_rules({"safe": {"base": "default", "keep": "probe"}}, {"default": []}, "s")
    assert rules["safe"] == {"base": "default", "alphas": [0.0, 1.0], "keep": "probe", "evidence_p": 1.0}
