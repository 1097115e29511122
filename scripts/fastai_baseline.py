"""fastai's own `Learner.fine_tune` on our backbone and ImageNet weights: the recipe study's baseline (issue 31).

What a fastai user would type, with only the weights coming from our file instead of a download:
train on `<data>/train` with a seeded random 15% of it as fastai's validation set, `Resize(224)`,
`aug_transforms()`, ImageNet normalisation, batch size 32, then `learn.fine_tune(epochs)` (fastai's
defaults: one frozen epoch at 2e-3, then `epochs` unfrozen with discriminative rates). The model is
`vision_learner`'s timm branch rebuilt from fastai's own pieces (`TimmBody`, `add_head`/`create_head`,
`default_split`, `Learner`, `freeze`). Accuracy of the final model is measured on `<data>/test`, or on
`<data>/val` when there is no test/ (the reported split is never used for selection).

fastai lives outside the venv (it must not touch the venv's torch):

    PYTHONPATH=/work/fastai-lib .venv/bin/python scripts/fastai_baseline.py --data <folder> --name <set> \\
        --seeds 0 1 2 --epochs 5 --weights weights/efficientnet_lite0.safetensors \\
        --out runs/recipe-study/fastai/results.csv

One CSV row per (set, seed): dataset,recipe,seed,acc,seconds (seconds = wall time of fine_tune);
a (set, seed) already in the CSV is skipped, so reruns resume.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import timm
from fastai.vision.all import (
    Adam,
    CategoryBlock,
    DataBlock,
    ImageBlock,
    Learner,
    Normalize,
    RandomSplitter,
    Resize,
    TimmBody,
    accuracy,
    add_head,
    aug_transforms,
    default_split,
    defaults,
    get_image_files,
    imagenet_stats,
    parent_label,
    set_seed,
)
from safetensors.torch import load_file
from torch import nn

RECIPE = "fastai-fine_tune"
FIELDS = ["dataset", "recipe", "seed", "acc", "seconds"]


def timm_backbone(arch: str, weights: Path) -> nn.Module:
    """`timm.create_model(arch, num_classes=0)` with our weights; the file's classifier is dropped."""
    model = timm.create_model(arch, pretrained=False, num_classes=0)
    state = load_file(str(weights))
    target = model.state_dict()
    dropped = sorted(k for k in state if k not in target)
    if any(not k.startswith("classifier.") for k in dropped):
        raise SystemExit(f"{weights}: keys that {arch} does not have: {dropped[:5]}")
    model.load_state_dict({k: v for k, v in state.items() if k in target}, strict=True)
    return model


def make_learner(dls, arch: str, weights: Path) -> Learner:
    """`vision_learner(dls, arch)` for a timm `arch` string, pretrained, with defaults; weights from our file."""
    model = timm_backbone(arch, weights)
    body = TimmBody(model, pretrained=True, cut=None, n_in=3)  # as create_timm_model
    net = add_head(body, model.num_features, dls.c, init=nn.init.kaiming_normal_, pool=body.needs_pool)
    learn = Learner(
        dls, net, loss_func=None, opt_func=Adam, lr=defaults.lr, splitter=default_split, metrics=accuracy,
        wd=None, wd_bn_bias=False, train_bn=True, moms=(0.95, 0.85, 0.95),
    )  # fmt: skip
    learn.freeze()
    return learn


def reported_split(data: Path) -> Path:
    for name in ("test", "val"):
        if (data / name).is_dir():
            return data / name
    raise SystemExit(f"{data}: no test/ or val/ folder to report on")


def done_keys(out: Path) -> set[tuple[str, int]]:
    if not out.is_file():
        return set()
    with out.open(newline="") as f:
        return {(r["dataset"], int(r["seed"])) for r in csv.DictReader(f) if r.get("recipe") == RECIPE}


def run_one(args: argparse.Namespace, seed: int) -> tuple[float, float]:
    set_seed(seed, reproducible=True)
    block = DataBlock(
        blocks=(ImageBlock, CategoryBlock),  # ImageBlock opens every image as RGB: grey becomes 3-channel
        get_items=get_image_files,
        get_y=parent_label,
        splitter=RandomSplitter(valid_pct=0.15, seed=seed),
        item_tfms=Resize(args.size),
        batch_tfms=[*aug_transforms(), Normalize.from_stats(*imagenet_stats)],
    )
    dls = block.dataloaders(args.data / "train", bs=args.bs, num_workers=args.workers)
    learn = make_learner(dls, args.arch, args.weights)
    # Speed only (NHWC, the same maths; about 2x on this CPU), as our finetune.yaml's channels_last; no AMP.
    learn.to_channelslast(use_amp=False)
    start = time.perf_counter()
    with learn.no_bar():
        learn.fine_tune(args.epochs)
    seconds = time.perf_counter() - start
    split = reported_split(args.data)
    test_dl = learn.dls.test_dl(get_image_files(split), with_labels=True)
    with learn.no_bar():
        preds, targs = learn.get_preds(dl=test_dl)
    acc = (preds.argmax(dim=1) == targs).float().mean().item()
    print(f"{args.name} seed {seed}: {split.name} acc {acc:.4f} (n={len(targs)}), fine_tune {seconds:.1f} s")
    return acc, seconds


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, required=True, help="folder with train/ and test/ (or val/)")
    p.add_argument("--name", required=True, help="data set name for the CSV")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--epochs", type=int, default=5, help="unfrozen epochs of fine_tune (plus 1 frozen)")
    p.add_argument("--weights", type=Path, required=True, help=".safetensors with timm key names")
    p.add_argument("--out", type=Path, required=True, help="CSV to append to")
    p.add_argument("--arch", default="efficientnet_lite0")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--bs", type=int, default=32)
    p.add_argument("--workers", type=int, default=0)
    args = p.parse_args(argv)
    if not (args.data / "train").is_dir():
        raise SystemExit(f"{args.data}: no train/ folder")
    done = done_keys(args.out)
    for seed in args.seeds:
        if (args.name, seed) in done:
            print(f"{args.name} seed {seed}: already in {args.out}, skipped")
            continue
        acc, seconds = run_one(args, seed)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        new = not args.out.is_file()
        with args.out.open("a", newline="") as f:
            writer = csv.writer(f)
            if new:
                writer.writerow(FIELDS)
            writer.writerow([args.name, RECIPE, seed, f"{acc:.4f}", f"{seconds:.1f}"])


if __name__ == "__main__":
    main()
