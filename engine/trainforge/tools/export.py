"""Export a trained checkpoint to TorchScript and ONNX, each checked against the PyTorch model's outputs.

`python -m trainforge.tools.export CKPT [--out-dir DIR] [--atol 1e-4]` (CKPT: a `.ckpt` or a run directory).
The check runs real samples of the run's data through both and compares logits: max |difference| must
be within `--atol` (default 1e-4, float32), else the command fails.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trainforge.checkpoints import build_datamodule, load_model, resolve_checkpoint
from trainforge.tools.predict import data_loader

DEFAULT_ATOL = 1e-4


def export(ckpt: str | Path, out_dir: Path | None = None, atol: float = DEFAULT_ATOL) -> dict[str, Any]:
    path = resolve_checkpoint(ckpt)
    model, config = load_model(path)
    out_dir = Path(out_dir) if out_dir is not None else path.resolve().parent.parent / "export"
    out_dir.mkdir(parents=True, exist_ok=True)
    loader, _ = data_loader(build_datamodule(config), "val", batch_size=16)
    x = next(iter(loader))[0]
    with torch.no_grad():
        reference = model(x)

    scripted_path = out_dir / "model.torchscript.pt"
    # Lightning's own exporters: they know to skip the Trainer-bound attributes of a LightningModule.
    model.to_torchscript(str(scripted_path), method="trace", example_inputs=x[:2])
    with torch.no_grad():
        scripted_out = torch.jit.load(str(scripted_path))(x)

    import onnxruntime as ort  # imported late: only export needs it

    onnx_path = out_dir / "model.onnx"
    model.to_onnx(
        str(onnx_path),
        x[:2],
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        dynamo=False,
    )
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    onnx_out = session.run(None, {"input": x.numpy()})[0]

    report = {
        "checkpoint": str(path),
        "atol": atol,
        "samples": int(x.shape[0]),
        "input_shape": list(x.shape[1:]),
        "torchscript": {
            "path": str(scripted_path),
            "max_abs_diff": float((scripted_out - reference).abs().max()),
        },
        "onnx": {"path": str(onnx_path), "max_abs_diff": float(np.abs(onnx_out - reference.numpy()).max())},
    }
    (out_dir / "export.json").write_text(json.dumps(report, indent=2) + "\n")
    for fmt in ("torchscript", "onnx"):
        diff = report[fmt]["max_abs_diff"]
        print(f"{fmt}: {report[fmt]['path']} max |logit difference| {diff:.2e} (tolerance {atol:.0e})")
        if not diff <= atol:
            raise SystemExit(f"error: {fmt} export differs from PyTorch by {diff:.2e} > {atol:.0e}")
    return report


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m trainforge.tools.export", description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint", help="a checkpoint file or a run directory")
    parser.add_argument("--out-dir", type=Path, default=None, help="default: <run dir>/export")
    parser.add_argument("--atol", type=float, default=DEFAULT_ATOL)
    args = parser.parse_args(argv)
    export(args.checkpoint, args.out_dir, args.atol)


if __name__ == "__main__":
    main()
