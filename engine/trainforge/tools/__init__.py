"""Tools around the runtime, reached as `python -m <project or trainforge> <tool> ...` (and Make targets).

Each tool is a module with `main(argv)`; it is imported only when called, so `fit` never pays for optuna,
onnx or the benchmarks.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

TOOLS = {
    "bench": ("trainforge.tools.bench", "template fit against a hand-written PyTorch loop (make bench)"),
    "bench-finetune": ("trainforge.tools.bench_finetune", "make finetune against the usual fine-tune loop"),
    "check-data": ("trainforge.tools.check_data", "class counts, sizes and bad files of an image folder"),
    "convert-weights": ("trainforge.tools.convert_efficientnet_lite", "timm-named EfficientNet-Lite weights"),
    "export": ("trainforge.tools.export", "TorchScript and ONNX, checked against PyTorch (make export)"),
    "infer": ("trainforge.tools.predict", "predictions CSV of runs or ensembles on a split or folder"),
    "lr-find": ("trainforge.tools.tune", "learning-rate range test"),
    "bs-find": ("trainforge.tools.tune", "largest batch size that fits"),
    "overfit": ("trainforge.tools.tune", "train on one batch until the loss is ~0"),
    "spotcheck": ("trainforge.tools.spotcheck", "train several backbones briefly and rank them"),
    "sweep": ("trainforge.tools.sweep", "Optuna sweep of real training runs"),
    "submit": ("trainforge.tools.submit", "submit fit to SLURM with submitit (requeued on preemption)"),
    "shards": (
        "trainforge.tools.shards",
        "a sharded copy of an image folder or CSV for streaming (make shards)",
    ),
    "bench-streaming": (
        "trainforge.tools.bench_streaming",
        "streaming loader vs the image folder's, images/s and cache (make bench-streaming)",
    ),
    "recipe-study": (
        "trainforge.tools.recipe_study",
        "fine-tune recipes against their linear probe, sets x seeds",
    ),
    "new": ("trainforge.tools.scaffold", "write a new project (the user's surface + the pinned engine)"),
    "update": ("trainforge.tools.update", "move this project to a newer engine"),
    "update-template": (
        "trainforge.tools.template_update",
        "merge a newer template's project files (make update-template)",
    ),
}
TUNE_MODES = ("lr-find", "bs-find", "overfit")


def run_tool(argv: Sequence[str]) -> bool:
    """Run the tool named by argv[0]; False when argv[0] is not a tool (a LightningCLI subcommand)."""
    if not argv or argv[0] not in TOOLS:
        return False
    name, rest = argv[0], list(argv[1:])
    module = importlib.import_module(TOOLS[name][0])
    result = module.main([name, *rest] if name in TUNE_MODES else rest)
    if isinstance(result, int) and result:
        raise SystemExit(result)
    return True


def tools_help() -> str:
    return "\n".join(f"  {name:16s} {what}" for name, (_, what) in TOOLS.items())
