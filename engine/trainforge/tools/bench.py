"""`make bench` / `python -m trainforge bench`: the template's fit against a hand-written PyTorch loop.

Alternating pairs, in one process: (A) `python -m trainforge fit` with the default callbacks and loggers,
(B) a minimal PyTorch loop with the same model, data loader, batch size, precision and memory format;
then the data loader alone. Prints a table; the last line is `bench result: <path to the JSON>`.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from trainforge.tools.timing import Timing, loader_only, raw_loop

SYNTHETIC = "trainforge.data.synthetic.SyntheticDataModule"


def glue_value(argv: list[str], option: str) -> list[str]:
    """`--fit-args "--trainer.x=1"` as `--fit-args=...`: argparse takes a value starting with `--` for an option."""
    out = list(argv)
    for i, arg in enumerate(out[:-1]):
        if arg == option:
            out[i : i + 2] = [f"{option}={out[i + 1]}"]
            break
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m trainforge bench", description=__doc__.split("\n")[0], allow_abbrev=False
    )
    p.add_argument("--model", default="resnet18", help="timm model name (default: resnet18)")
    p.add_argument("--image-size", type=int, default=64, help="synthetic image size (default: 64)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--precision", default="32-true", help="32-true, 16-mixed or bf16-mixed")
    p.add_argument("--channels-last", action="store_true", help="channels_last memory format in A and B")
    p.add_argument("--compile", action="store_true", help="torch.compile the model in A and B")
    # 100 steps x 5 pairs: on 2 CPU cores, 30-step windows (4 s) gave ratios from 1.05 to 1.30 for one setup.
    p.add_argument("--steps", type=int, default=100, help="timed steps per run, the same in A and B")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps before them")
    p.add_argument("--pairs", type=int, default=5, help="A/B pairs (the order alternates)")
    p.add_argument("--data", default=SYNTHETIC, help="DataModule class path (default: synthetic images)")
    p.add_argument("--data-args", default="{}", help='its init args as JSON, e.g. \'{"root": "data/x"}\'')
    p.add_argument("--num-workers", default="auto", help='loader workers, "auto" or a number')
    p.add_argument("--accelerator", default="auto", choices=("auto", "cpu", "gpu"), help="GPU when present")
    p.add_argument(
        "--fit-args",
        default="",
        help='extra `fit` overrides for A, e.g. --fit-args="--trainer.benchmark=true"',
    )
    p.add_argument("--out", default=None, help="JSON path (default: runs/bench/bench-<time>.json)")
    args = p.parse_args(glue_value(sys.argv[1:] if argv is None else argv, "--fit-args"))
    if min(args.steps, args.warmup, args.pairs, args.batch_size) < 1:
        p.error("--steps, --warmup, --pairs and --batch-size must be >= 1")
    try:
        args.data_args = json.loads(args.data_args)
    except json.JSONDecodeError as err:
        p.error(f"--data-args is not JSON ({err}): {args.data_args!r}")
    if not isinstance(args.data_args, dict):
        p.error(f"--data-args must be a JSON object, got {args.data_args!r}")
    return args


def data_init_args(args: argparse.Namespace) -> dict[str, Any]:
    workers = args.num_workers if args.num_workers == "auto" else int(args.num_workers)
    init = {"batch_size": args.batch_size, "num_workers": workers}
    if args.data == SYNTHETIC:  # enough images for one epoch of warm-up and timed steps
        samples = (args.warmup + args.steps + 1) * args.batch_size
        init |= {"num_samples": samples, "eval_samples": 2 * args.batch_size, "image_size": args.image_size}
    return init | args.data_args


def make_datamodule(args: argparse.Namespace) -> Any:
    module, _, name = args.data.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as err:
        raise SystemExit(f"error: --data {args.data!r} is no importable class ({err})") from err
    return cls(**data_init_args(args))


def run_template(args: argparse.Namespace, device: torch.device, out_dir: Path, name: str) -> Timing:
    """(A): the user's `python -m trainforge fit`, default callbacks and loggers, plus the step timer."""
    from trainforge.launch import main as cli_main

    timer_path = out_dir / f"{name}.json"
    timer_path.unlink(missing_ok=True)
    callbacks = [
        {
            "class_path": "trainforge.tools.timing.StepTimer",
            "init_args": {"path": str(timer_path), "warmup": args.warmup, "steps": args.steps},
        },
        {
            "class_path": "trainforge.tools.timing.ModelOptions",
            "init_args": {"channels_last": args.channels_last, "compile": args.compile},
        },
    ]
    data = {"class_path": args.data, "init_args": data_init_args(args)}
    cli_main(
        [
            "fit",
            f"--run.root={out_dir / 'runs'}",
            "--run.experiment=bench",
            f"--run.name={name}",
            "--run.fresh=true",  # a re-used --out measures again instead of resuming the earlier A run
            f"--data={json.dumps(data)}",
            f"--model.backbone={args.model}",
            f"--trainer.precision={args.precision}",
            f"--trainer.accelerator={device.type if device.type == 'cpu' else 'gpu'}",
            "--trainer.devices=1",
            f"--trainer.max_steps={args.warmup + args.steps}",
            "--trainer.max_epochs=-1",  # small real data sets: as many epochs as the steps need
            "--trainer.limit_val_batches=2",
            "--trainer.limit_test_batches=2",
            f"--trainer.callbacks={json.dumps(callbacks)}",
            *shlex.split(args.fit_args),
        ]
    )
    if not timer_path.is_file():
        raise SystemExit(f"error: the template run {name} stopped before {args.warmup + args.steps} steps")
    return Timing(**json.loads(timer_path.read_text()))


def run_raw(args: argparse.Namespace, device: torch.device) -> Timing:
    """(B): the hand-written loop."""
    return raw_loop(
        make_datamodule(args),
        args.model,
        args.precision,
        args.channels_last,
        args.compile,
        device,
        args.warmup,
        args.steps,
    )


def pick_device(accelerator: str) -> torch.device:
    if accelerator == "gpu" and not torch.cuda.is_available():
        raise SystemExit("error: --accelerator gpu but torch sees no CUDA device")
    return torch.device("cuda" if accelerator != "cpu" and torch.cuda.is_available() else "cpu")


def summarize(
    args: argparse.Namespace, device: torch.device, a: list[Timing], b: list[Timing], loader: Timing
) -> dict[str, Any]:
    images = args.steps * args.batch_size
    ratios = [ta.seconds / tb.seconds for ta, tb in zip(a, b, strict=True)]
    return {
        "template_imgs_per_s": round(images / statistics.median(t.seconds for t in a), 2),
        "raw_imgs_per_s": round(images / statistics.median(t.seconds for t in b), 2),
        "ratios": [round(r, 4) for r in ratios],
        "ratio_median": round(statistics.median(ratios), 4),
        "ratio_min": round(min(ratios), 4),
        "ratio_max": round(max(ratios), 4),
        "loader_imgs_per_s": round(images / loader.seconds, 2),
        "template_step_ms": [round(1000 * t.seconds / args.steps, 2) for t in a],
        "raw_step_ms": [round(1000 * t.seconds / args.steps, 2) for t in b],
        "template_peak_rss_mb": round(max(t.peak_rss_mb for t in a), 1),
        "raw_peak_rss_mb": round(max(t.peak_rss_mb for t in b), 1),
        "template_peak_cuda_mb": max((t.peak_cuda_mb for t in a), default=None)
        if device.type == "cuda"
        else None,
        "raw_peak_cuda_mb": max((t.peak_cuda_mb for t in b), default=None) if device.type == "cuda" else None,
        "config": {k: v for k, v in vars(args).items() if k != "out"},
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)",
        "torch": torch.__version__,
    }


def print_table(result: dict[str, Any]) -> None:
    cuda = result["template_peak_cuda_mb"] is not None
    rows = [
        (
            "A template fit",
            result["template_imgs_per_s"],
            statistics.median(result["template_step_ms"]),
            result["template_peak_rss_mb"],
            result["template_peak_cuda_mb"],
        ),
        (
            "B raw PyTorch",
            result["raw_imgs_per_s"],
            statistics.median(result["raw_step_ms"]),
            result["raw_peak_rss_mb"],
            result["raw_peak_cuda_mb"],
        ),
    ]
    print(f"\nbench on {result['device']}, torch {result['torch']}")
    print(
        f"{'':16}{'images/s':>10}{'step ms':>10}{'peak RSS MB':>13}"
        + (f"{'peak CUDA MB':>14}" if cuda else "")
    )
    for name, ips, ms, rss, cmb in rows:
        print(f"{name:16}{ips:>10.1f}{ms:>10.1f}{rss:>13.0f}" + (f"{cmb:>14.0f}" if cuda else ""))
    print(f"{'loader only':16}{result['loader_imgs_per_s']:>10.1f}")
    ratios = ", ".join(f"{r:.3f}" for r in result["ratios"])
    print(
        f"A/B step-time ratio: median {result['ratio_median']:.3f} (min {result['ratio_min']:.3f}, max {result['ratio_max']:.3f}; pairs: {ratios})"
    )
    if result["loader_imgs_per_s"] < 1.2 * result["raw_imgs_per_s"]:
        print("note: the loader alone is barely faster than training: this setup is data-bound")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    device = pick_device(args.accelerator)
    out = Path(args.out) if args.out else Path("runs/bench") / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out_dir = out.with_suffix("")
    out_dir.mkdir(parents=True, exist_ok=True)
    a: list[Timing] = []
    b: list[Timing] = []
    for pair in range(args.pairs):
        order = ("A", "B") if pair % 2 == 0 else ("B", "A")  # alternate to cancel drift (thermal, neighbours)
        for which in order:
            if which == "A":
                a.append(run_template(args, device, out_dir, f"A{pair}"))
            else:
                b.append(run_raw(args, device))
            gc.collect()  # free the finished run's loader workers before the next one starts
            print(
                f"pair {pair} {which}: {args.steps * args.batch_size / (a if which == 'A' else b)[-1].seconds:.1f} images/s",
                flush=True,
            )
    loader = loader_only(make_datamodule(args), device, args.warmup, args.steps)
    result = summarize(args, device, a, b, loader)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print_table(result)
    print(f"bench result: {out.resolve()}", flush=True)


if __name__ == "__main__":
    main()
