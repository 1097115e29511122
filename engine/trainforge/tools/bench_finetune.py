"""`make bench-finetune`: `make finetune` against the hand-written fine-tune loop most users write, side by side.

(N) the naive loop: `timm.create_model(pretrained=True)` with the local weights file, timm's default train
and eval transforms, torchvision's `ImageFolder`, one SGD learning rate for every weight, BatchNorm in
train mode, cosine schedule, evaluation on test/ (else val/) after every epoch; (T) the template's
`python -m trainforge fit --experiment finetune` in a subprocess, exactly as `make finetune` runs it.
Prints epoch times (training + evaluation), images/s and accuracies; writes a JSON; the last line is
`bench result: <path>`. The naive loop is written out here because it is what is being measured against.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import timm
import torch
from timm.data import create_transform, resolve_data_config
from torch import nn
from torch.utils.data import DataLoader
from torchvision.datasets import ImageFolder

from trainforge.tools.bench import glue_value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m trainforge.tools.bench_finetune",
        description=__doc__.split("\n")[0],
        allow_abbrev=False,
    )
    p.add_argument("--data", required=True, help="image folder with train/ and test/ (or val/)")
    p.add_argument("--weights", default=None, help="local weights file (timm key names); none: random init")
    p.add_argument("--model", default="efficientnet_lite0", help="timm model name (both sides)")
    p.add_argument("--image-size", type=int, default=None, help="default: the model's pretrained size")
    p.add_argument("--epochs", type=int, default=5, help="naive loop epochs (the template keeps its own)")
    p.add_argument("--batch-size", type=int, default=32, help="naive loop batch size")
    p.add_argument("--workers", type=int, default=2, help="naive loop loader workers")
    p.add_argument("--lr", type=float, default=0.01, help="naive loop SGD learning rate (momentum 0.9)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--fit-args", default="", help='extra `fit` overrides for the template, e.g. "--run.name=x"'
    )
    p.add_argument("--out", default=None, help="JSON path (default: runs/bench/finetune-<time>.json)")
    args = p.parse_args(glue_value(sys.argv[1:] if argv is None else argv, "--fit-args"))
    data = Path(args.data)
    if not (data / "train").is_dir() or not ((data / "test").is_dir() or (data / "val").is_dir()):
        p.error(f"--data {data}: needs train/ and test/ (or val/) class folders")
    if args.weights and not Path(args.weights).is_file():
        p.error(
            f"--weights {args.weights}: no such file (`make convert-weights` writes one for efficientnet_lite0)"
        )
    if min(args.epochs, args.batch_size) < 1 or args.workers < 0:
        p.error("--epochs and --batch-size must be >= 1, --workers >= 0")
    return args


def eval_split(data: Path) -> str:
    return "test" if (data / "test").is_dir() else "val"


@torch.no_grad()
def accuracy(model: nn.Module, loader: DataLoader) -> float:
    model.eval()
    hits = total = 0
    for x, y in loader:
        hits += int((model(x).argmax(1) == y).sum())
        total += len(y)
    return hits / total


def naive_loop(args: argparse.Namespace) -> dict[str, Any]:
    """The hand-written baseline: the usual timm + torchvision fine-tune, nothing tuned."""
    torch.manual_seed(args.seed)
    data = Path(args.data)
    split = eval_split(data)
    classes = len([d for d in (data / "train").iterdir() if d.is_dir()])
    kwargs: dict[str, Any] = {"num_classes": classes, "pretrained": bool(args.weights)}
    if args.weights:  # timm drops the pretrained classifier when num_classes differs
        kwargs["pretrained_cfg_overlay"] = {"file": str(Path(args.weights).resolve())}
    model = timm.create_model(args.model, **kwargs)
    size = {"input_size": (3, args.image_size, args.image_size)} if args.image_size else {}
    config = resolve_data_config(size, model=model)
    train = ImageFolder(str(data / "train"), create_transform(**config, is_training=True))
    test = ImageFolder(str(data / split), create_transform(**config))
    loader_kw = {
        "batch_size": args.batch_size,
        "num_workers": args.workers,
        "persistent_workers": args.workers > 0,
    }
    train_loader = DataLoader(train, shuffle=True, drop_last=True, **loader_kw)
    test_loader = DataLoader(test, **loader_kw)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs * len(train_loader))
    loss_fn = nn.CrossEntropyLoss()
    epoch_s, accs = [], []
    start = time.perf_counter()
    for epoch in range(args.epochs):
        t0 = time.perf_counter()
        model.train()
        for x, y in train_loader:
            loss = loss_fn(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
        accs.append(accuracy(model, test_loader))
        epoch_s.append(time.perf_counter() - t0)
        print(f"naive epoch {epoch}: {epoch_s[-1]:.1f} s, {split} acc {accs[-1]:.4f}", flush=True)
    return {
        "epoch_s": epoch_s,
        "total_s": time.perf_counter() - start,
        "acc": accs[-1],
        "best_epoch_acc": max(accs),
        "accs": accs,
        "train_images_per_epoch": len(train_loader) * args.batch_size,
        "eval_images_per_epoch": len(test),
        "evaluated_on": split,
    }


def template_finetune(args: argparse.Namespace, out_dir: Path) -> dict[str, Any]:
    """`make finetune DATA=... WEIGHTS=...` in a subprocess, with an epoch timer added."""
    timer = out_dir / "epochs.json"
    callbacks = [
        {"class_path": "trainforge.tools.timing.EpochTimer", "init_args": {"path": str(timer.resolve())}}
    ]
    command = [
        sys.executable, "-m", "trainforge", "fit", "--experiment", "finetune",
        f"--data.root={args.data}", f"--run.root={out_dir / 'runs'}", "--run.name=template",
        f"--trainer.callbacks={json.dumps(callbacks)}", f"--seed_everything={args.seed}",
    ]  # fmt: skip
    if args.weights:
        command.append(f"--model.weights={args.weights}")
    if args.model != "efficientnet_lite0":
        command.append(f"--model.backbone={args.model}")
    if args.image_size:
        command.append(f"--data.image_size={args.image_size}")
    command += shlex.split(args.fit_args)
    print("template:", shlex.join(command), flush=True)
    start = time.perf_counter()
    done = subprocess.run(command, env=os.environ | {"WANDB_MODE": os.environ.get("WANDB_MODE", "offline")})
    total = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"error: the template run failed (exit {done.returncode}); its output is above")
    run_dir = next((out_dir / "runs").glob("*/template"))
    summary = json.loads((run_dir / "summary.json").read_text())
    timing = json.loads(timer.read_text())
    metrics = summary["metrics"]
    evaluated = "test" if "test/acc" in metrics else "val"
    return {
        "epoch_s": timing["epoch_s"],
        "before_first_epoch_s": timing["before_first_epoch_s"],
        "train_images_per_epoch": timing["train_images_per_epoch"],
        "eval_images_per_epoch": timing["val_images_per_epoch"],
        "total_s": total,
        "acc": metrics[f"{evaluated}/acc"],
        "val_acc": metrics.get("val/acc"),
        "evaluated_on": evaluated,
        "run_dir": str(run_dir),
    }


def print_table(result: dict[str, Any]) -> None:
    print(f"\n{'':20}{'epochs':>7}{'epoch s':>9}{'train+eval images':>19}{'total s':>9}{'accuracy':>10}")
    for name, key in (("naive loop", "naive"), ("template finetune", "template")):
        r = result[key]
        images = f"{r['train_images_per_epoch']}+{r['eval_images_per_epoch']}"
        epoch = statistics.mean(r["epoch_s"])
        print(
            f"{name:20}{len(r['epoch_s']):>7}{epoch:>9.1f}{images:>19}{r['total_s']:>9.0f}{r['acc']:>10.4f}"
        )
    print(
        f"epoch time template/naive: {result['epoch_time_ratio']:.2f}; accuracy on {result['naive']['evaluated_on']}: "
        f"naive {result['naive']['acc']:.4f} (best epoch {result['naive']['best_epoch_acc']:.4f}), "
        f"template {result['template']['acc']:.4f} (template's head probe and start-up: "
        f"{result['template']['before_first_epoch_s']:.0f} s)"
    )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    out = (
        Path(args.out) if args.out else Path("runs/bench") / f"finetune-{time.strftime('%Y%m%d-%H%M%S')}.json"
    )
    out_dir = out.with_suffix("")
    out_dir.mkdir(parents=True, exist_ok=True)
    naive = naive_loop(args)
    template = template_finetune(args, out_dir)
    result = {
        "naive": naive,
        "template": template,
        "epoch_time_ratio": statistics.mean(template["epoch_s"]) / statistics.mean(naive["epoch_s"]),
        "config": {k: v for k, v in vars(args).items() if k != "out"},
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }
    out.write_text(json.dumps(result, indent=2) + "\n")
    print_table(result)
    print(f"bench result: {out.resolve()}", flush=True)


if __name__ == "__main__":
    main()
