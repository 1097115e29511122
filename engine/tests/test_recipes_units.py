"""Recipes without a training run: schedules against their formulas, sampler, penalties, model flags."""

import math
import types

import pytest
import torch

from tests.conftest import lrs_over_steps
from trainforge.data.sampling import BalancedSampler, balanced_class_weights, class_counts, thin_classes
from trainforge.errors import ConfigError
from trainforge.models import ImageClassifier
from trainforge.tasks import Regression
from trainforge.training.ema import averaged_state_dict, live_state_dict
from trainforge.training.mixing import Mixup
from trainforge.training.optim import SGDR, build_optimizer, build_schedule, scheduler_config
from trainforge.training.regularization import L1Penalty, MaxNorm, l1_penalty, select_parameters


def _opt(lr=0.1, name="sgd", **kw):
    return build_optimizer([torch.nn.Parameter(torch.zeros(1))], name, lr=lr, **kw)


def test_sgd_nesterov_and_adamw_by_name():
    opt = _opt(name="sgd", momentum=0.9, nesterov=True)
    assert isinstance(opt, torch.optim.SGD) and opt.defaults["nesterov"] and opt.defaults["momentum"] == 0.9
    assert isinstance(_opt(name="NAdam"), torch.optim.NAdam)


def test_sgdr_restarts_with_decayed_peaks_after_warmup():
    opt = _opt(0.1)
    # 10 steps per epoch: warmup 5 steps, T_0 = 1.5 epochs = 15 steps, T_mult = 2, peaks halve.
    sched = build_schedule(
        opt, "sgdr", 200, warmup_steps=5, steps_per_epoch=10, T_0=1.5, T_mult=2, peak_decay=0.5
    )
    assert isinstance(sched, SGDR)
    lrs = lrs_over_steps(sched, opt, 120)

    def formula(step):
        t = step - 5
        peak, length = 1.0, 15
        while t >= length:
            t, peak, length = t - length, peak * 0.5, length * 2
        return 0.1 * peak * 0.5 * (1 + math.cos(math.pi * t / length))

    assert lrs[0] == pytest.approx(0.001)
    assert lrs[5] == pytest.approx(0.1)  # first peak
    assert lrs[20] == pytest.approx(0.05)  # restart 1 at half the peak
    assert lrs[50] == pytest.approx(0.025)  # restart 2 (15 + 30 steps after warmup)
    for step in (3, 12, 19, 33, 49, 77, 119):
        if step >= 5:
            assert lrs[step] == pytest.approx(formula(step), rel=1e-6)
    assert sched.cycle_end_steps(200) == [20, 50, 110]


def test_onecycle_step_multistep_and_plateau():
    opt = _opt(0.1)
    lrs = lrs_over_steps(build_schedule(opt, "onecycle", 100, warmup_steps=20), opt, 100)
    assert lrs[19] == pytest.approx(0.1) == max(lrs)  # OneCycleLR peaks at step pct_start * total - 1
    assert lrs[0] == pytest.approx(0.1 / 25)  # OneCycleLR's div_factor
    assert lrs[99] < 1e-4

    opt = _opt(0.1)
    lrs = lrs_over_steps(
        build_schedule(opt, "step", 100, steps_per_epoch=10, step_epochs=2, gamma=0.5), opt, 50
    )
    assert (lrs[19], lrs[20], lrs[40]) == pytest.approx((0.1, 0.05, 0.025))

    opt = _opt(0.1)
    sched = build_schedule(opt, "multistep", 100, warmup_steps=5, steps_per_epoch=10, milestones=[1.5, 3])
    lrs = lrs_over_steps(sched, opt, 60)
    assert lrs[5 + 14] == pytest.approx(0.1) and lrs[5 + 15] == pytest.approx(0.01)
    assert lrs[5 + 30] == pytest.approx(0.001)

    opt = _opt(0.1)
    plateau = build_schedule(opt, "plateau", 100, monitor="val/loss", patience=0, factor=0.5)
    config = scheduler_config(plateau, "val/loss")
    assert config["interval"] == "epoch" and config["monitor"] == "val/loss"
    plateau.step(1.0)
    plateau.step(2.0)  # no improvement, patience 0
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05)
    with pytest.raises(ValueError, match="needs a metric"):
        scheduler_config(plateau)
    with pytest.raises(ValueError, match=r"unknown keys \['T0'\]"):
        build_schedule(_opt(), "sgdr", 10, T0=1)


def test_balanced_sampler_oversamples_undersamples_and_shards_per_rank():
    labels = [0] * 5 + [1] * 50 + [2] * 20
    over = BalancedSampler(labels, "oversample", seed=3)
    drawn = list(over)
    assert class_counts([labels[i] for i in drawn], 3).tolist() == [50, 50, 50]
    assert set(range(5)) <= set(drawn)  # every minority sample is used
    under = list(BalancedSampler(labels, "undersample", seed=3))
    assert class_counts([labels[i] for i in under], 3).tolist() == [5, 5, 5]
    # Two DDP ranks: disjoint shards of the same balanced epoch; set_epoch changes the draw.
    ranks = [BalancedSampler(labels, "oversample", num_replicas=2, rank=r, seed=3) for r in (0, 1)]
    shards = [list(s) for s in ranks]
    assert len(shards[0]) == len(shards[1]) == 75
    assert sorted(shards[0] + shards[1]) == sorted(drawn)
    assert isinstance(ranks[0], torch.utils.data.DistributedSampler)  # so Lightning does not re-wrap it
    ranks[0].set_epoch(1)
    assert list(ranks[0]) != shards[0]


def test_class_weights_and_thinned_classes():
    w = balanced_class_weights(torch.tensor([10, 90]))
    assert w.tolist() == pytest.approx([5.0, 100 / 180])
    labels = [0] * 100 + [1] * 100
    kept = thin_classes(labels, list(range(200)), classes=[0], keep=0.1, seed=0)
    assert class_counts([labels[i] for i in kept], 2).tolist() == [10, 100]


def _model(**kw):
    model = ImageClassifier(num_classes=3, in_chans=1, backbone="resnet10t", **kw)
    model.configure_model()
    return model


def test_l1_penalty_and_max_norm_bound_every_step():
    model = _model()
    chosen = select_parameters(model, ["head.*"], "x")
    expected = 0.01 * sum(p.abs().sum() for _, p in chosen)
    assert l1_penalty(chosen, 0.01).item() == pytest.approx(expected.item())
    l1 = L1Penalty(weight=0.01, params=["head.*"])
    l1.check(None, model)
    loss, terms = l1.adjust_loss(model, None, None, None, torch.tensor(1.0))
    assert terms["l1"].item() == pytest.approx(expected.item()) and loss.item() == pytest.approx(
        1 + expected.item()
    )
    assert not L1Penalty().active  # weight 0: the component does nothing
    with pytest.raises(ConfigError, match="no parameter name matches"):
        select_parameters(model, ["nope.*"], "l1.params")

    bound = MaxNorm(max_norm=0.05, params=["head.*.weight"])
    bound.setup(None, model, "fit")
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    x, y = torch.randn(4, 1, 16, 16), torch.tensor([0, 1, 2, 0])
    for _ in range(3):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        bound.on_train_batch_end(None, model)
        norms = model.head[1].weight.norm(dim=1)
        assert norms.max() <= 0.05 + 1e-6


def test_drop_path_and_dropout_reach_the_backbone_and_head():
    model = _model(backbone_kwargs={"drop_path_rate": 0.5}, drop_rate=0.3)
    rates = [m.drop_prob for m in model.backbone.modules() if type(m).__name__ == "DropPath"]
    assert rates and max(rates) > 0
    assert model.head[0].p == 0.3
    x = torch.randn(2, 1, 16, 16)
    model.train()
    assert not torch.allclose(model(x), model(x))
    model.eval()
    assert torch.allclose(model(x), model(x))


def test_mixup_mixes_training_batches_with_soft_targets():
    model = _model(label_smoothing=0.1)
    mix = Mixup(mixup_alpha=1.0)
    trainer = types.SimpleNamespace(datamodule=None)
    mix.check(trainer, model)
    torch.manual_seed(0)
    x, y = torch.randn(8, 1, 16, 16), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    mixed, soft = mix.transform_batch(model, x.clone(), y)  # timm mixes in place
    assert soft.shape == (8, 3) and soft.sum(1).allclose(torch.ones(8))
    assert (soft > 0).sum(1).max() == 2 and not torch.allclose(mixed, x)  # two labels per sample
    # The task's loss takes the mixed probabilities, and smooths them once (as timm's own smoothing would).
    logits = model(mixed)
    smoothed = soft * 0.9 + 0.1 / 3
    expected = -(smoothed * logits.log_softmax(-1)).sum(-1).mean()
    assert model.loss_fn(logits, soft).item() == pytest.approx(expected.item(), rel=1e-5)
    # Regression or other tasks refuse at start-up, in one line.
    regression = ImageClassifier(task=Regression(["y"]), in_chans=1, backbone="resnet10t")
    with pytest.raises(
        ConfigError, match="mixup: mixed targets are class probabilities, and this is a regression task"
    ):
        mix.check(trainer, regression)


def test_channels_last_and_compile_keep_outputs_and_state_keys():
    torch.manual_seed(0)
    plain = _model().eval()
    fast = _model(channels_last=True, compile={"backend": "eager"}).eval()
    fast.load_state_dict(plain.state_dict())
    conv = next(m for m in fast.backbone.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.randn(2, 1, 16, 16)
    assert torch.allclose(plain(x), fast(x), atol=1e-5)
    assert set(fast.state_dict()) == set(plain.state_dict())


def test_ema_checkpoint_weights_picked_on_purpose():
    ckpt = {"state_dict": {"w": 1}, "current_model_state": {"w": 2}}
    assert averaged_state_dict(ckpt) == {"w": 1} and live_state_dict(ckpt) == {"w": 2}
    assert live_state_dict({"state_dict": {"w": 3}}) == {"w": 3}
