"""The diagnosis names the right problem on constructed curves of each kind."""

import math

import pytest

from trainforge.reporting.diagnosis import MAX_SWITCHES, SWITCHES, diagnose, format_diagnosis


def history(train_loss, val_loss, train_metric, val_metric):
    return {
        "epoch": [float(i) for i in range(len(train_loss))],
        "train_loss": train_loss,
        "val_loss": val_loss,
        "train_metric": train_metric,
        "val_metric": val_metric,
    }


CASES = {
    "overfitting": history(
        [1.0, 0.5, 0.1, 0.02], [1.0, 0.8, 0.9, 1.1], [0.6, 0.8, 0.97, 0.99], [0.6, 0.7, 0.72, 0.71]
    ),
    "underfitting": history(
        [2.3, 2.2, 2.2, 2.1], [2.3, 2.25, 2.2, 2.2], [0.12, 0.2, 0.25, 0.3], [0.1, 0.18, 0.2, 0.21]
    ),
    "diverged": history(
        [1.0, 0.8, 3.0, 9.0], [1.0, 0.9, 4.0, 12.0], [0.6, 0.7, 0.3, 0.1], [0.6, 0.7, 0.2, 0.1]
    ),
    "still_improving": history(
        [1.0, 0.6, 0.4, 0.3], [1.0, 0.6, 0.45, 0.35], [0.7, 0.8, 0.86, 0.9], [0.7, 0.8, 0.85, 0.89]
    ),
}


@pytest.mark.parametrize("kind", sorted(CASES))
def test_each_kind_is_recognised_with_its_switches(kind):
    findings = diagnose(CASES[kind])
    assert [f["kind"] for f in findings][:1] == [kind]
    assert findings[0]["switches"] == SWITCHES[kind][:MAX_SWITCHES] and len(findings[0]["switches"]) >= 2
    assert kind in format_diagnosis(findings)


def test_nan_loss_is_diverged_and_a_converged_run_is_healthy():
    nan = history([1.0, math.nan], [1.0, math.nan], [0.5, math.nan], [0.5, math.nan])
    assert [f["kind"] for f in diagnose(nan)] == ["diverged"]
    healthy = history(
        [1.0, 0.3, 0.2, 0.2], [1.0, 0.35, 0.25, 0.25], [0.7, 0.95, 0.96, 0.96], [0.7, 0.95, 0.95, 0.95]
    )
    assert diagnose(healthy) == []
    assert "healthy" in format_diagnosis([])


def test_min_mode_metric_overfits_when_train_is_far_lower():
    curves = history([1.0, 0.5, 0.2], [1.0, 0.9, 1.0], [0.5, 0.2, 0.05], [0.5, 0.4, 0.45])
    assert [f["kind"] for f in diagnose(curves, mode="min")] == ["overfitting"]


# Regression: errors in the targets' units, judged against the error of predicting the training mean.
DIABETES_LIKE = history(  # MAE around 50 on targets with std ~77 (mean predictor's MAE ~61)
    [0.9, 0.7, 0.6, 0.58], [0.8, 0.66, 0.64, 0.63], [62.0, 52.0, 48.0, 47.0], [59.0, 54.7, 52.0, 51.6]
)


def test_regression_gap_is_judged_on_the_targets_scale_and_falling_errors_fell():
    # A 4.6 gap would be "overfitting" on the 0..1 thresholds; on a scale of ~61 it is not.
    assert "overfitting" in [f["kind"] for f in diagnose(DIABETES_LIKE, mode="min")]
    findings = diagnose(DIABETES_LIKE, mode="min", scale=61.0, task_kind="regression")
    assert "overfitting" not in [f["kind"] for f in findings]
    improving = next(f for f in findings if f["kind"] == "still_improving")
    assert "fell from 54.7 to 51.6" in improving["message"] and "rose" not in improving["message"]
    # A gap of 20% of the scale is overfitting.
    wide = history([0.9, 0.5, 0.3], [0.8, 0.7, 0.75], [60.0, 40.0, 38.0], [58.0, 51.0, 51.5])
    assert [f["kind"] for f in diagnose(wide, mode="min", scale=61.0)] == ["overfitting"]


def test_regression_near_the_mean_predictor_is_underfitting():
    flat = history([1.0, 0.98, 0.97], [1.0, 0.99, 0.99], [60.0, 59.5, 59.0], [61.0, 60.5, 60.6])
    assert [f["kind"] for f in diagnose(flat, mode="min", scale=61.0)] == ["underfitting"]


def test_only_switches_the_run_accepts_and_its_task_allows():
    accepted = {"model.lr", "model.weight_decay", "model.drop_rate", "model.dropout", "trainer.max_epochs"}
    overfit = CASES["overfitting"]
    findings = diagnose(overfit, accepts=accepted.__contains__, task_kind="regression")
    text = " ".join(findings[0]["switches"])
    assert "label_smoothing" not in text and "data.augment" not in text
    assert "--model.dropout=0.3" in text and "--model.weight_decay=0.1" in text
    # Label smoothing is offered to a multiclass model that takes it, and augmentation to data that has it.
    everything = accepted | {"model.label_smoothing", "data.augment"}
    multiclass = diagnose(overfit, accepts=everything.__contains__, task_kind="multiclass")
    assert any("label_smoothing" in s for s in multiclass[0]["switches"])
