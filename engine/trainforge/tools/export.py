"""`make export` / `python -m <project> export CKPT`: TorchScript and ONNX of a trained run, each checked
against the PyTorch model.

CKPT: a `.ckpt` or a run directory. The exported graph maps a preprocessed batch to the task's scores
(probabilities, or values in the targets' units); a table's graph takes raw rows, its preprocessing inside
(export.json's `input` says the column order). A consumer needs nothing but `export.json`: it holds
the task (kind, names, threshold) and the run's saved preprocessing (input size, interpolation, crop,
mean/std), which the ONNX file also carries as metadata. The check runs real samples of the run's data
(random inputs of the recorded shape when the data is not on this machine) through both and compares:
max |difference| must be within `--atol` (default 1e-4, float32), else the command fails.
ONNX uses torch's current exporter (`dynamo=True`); the TorchScript one is deprecated.
"""

from __future__ import annotations

import argparse
import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from trainforge.checkpoints import build_datamodule, load_model, resolve_checkpoint
from trainforge.errors import TemplateError
from trainforge.rundir import RunDir
from trainforge.tools.predict import data_loader

DEFAULT_ATOL = 1e-4


class Scores(nn.Module):
    """The model's backbone and head followed by the task's scores: what predictions report. It holds the
    two modules, not the LightningModule, whose Trainer-bound attributes the exporters cannot walk.
    `preprocess`: the DataModule's `graph_transform()` (tables: fill, standardise, one-hot), run first."""

    def __init__(self, model: nn.Module, preprocess: nn.Module | None = None) -> None:
        super().__init__()
        self.backbone, self.head = model.backbone, model.head
        self.preprocess = preprocess if preprocess is not None else nn.Identity()
        self.task = model.task

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.task.scores(self.head(self.backbone(self.preprocess(x))))


def example_inputs(datamodule: Any, preprocessing: dict[str, Any], model: nn.Module) -> torch.Tensor:
    """A batch of the run's own validation inputs, or random ones of the recorded shape without the data."""
    try:
        return next(iter(data_loader(datamodule, "val", batch_size=16)[0]))[0]
    except (OSError, TemplateError, ValueError):
        shape = preprocessing.get("input_size") or datamodule.input_shape or model.hparams.get("input_shape")
        if not shape:
            raise TemplateError("the run's data is not here and its input shape is unknown; run export where "
                                "the data is") from None  # fmt: skip
        return torch.randn(4, *shape)


def export(ckpt: str | Path, out_dir: Path | None = None, atol: float = DEFAULT_ATOL) -> dict[str, Any]:
    path = resolve_checkpoint(ckpt)
    model, config = load_model(path)
    run = RunDir.of_checkpoint(path)
    out_dir = Path(out_dir) if out_dir is not None else (run.exports if run else path.parent / "export")
    out_dir.mkdir(parents=True, exist_ok=True)
    datamodule = build_datamodule(config, path)
    preprocessing = datamodule.preprocessing  # restored from the checkpoint
    graph_transform = getattr(datamodule, "graph_transform", None)  # preprocessing the graph carries
    wrapped = Scores(model, graph_transform() if graph_transform else None).eval()
    x = datamodule.graph_inputs(16) if graph_transform else example_inputs(datamodule, preprocessing, model)
    with torch.no_grad():
        reference = wrapped(x)

    scripted_path = out_dir / "model.torchscript.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript's deprecation notice: the file still loads everywhere
        torch.jit.save(torch.jit.trace(wrapped, x[:2]), str(scripted_path))
        scripted_out = torch.jit.load(str(scripted_path))(x).detach()

    import onnx  # imported late: only export needs them (the `export` extra)
    import onnxruntime as ort

    onnx_path = out_dir / "model.onnx"
    batch = torch.export.Dim("batch", min=1)
    program = torch.onnx.export(
        wrapped, (x[:2],), dynamo=True, input_names=["input"], output_names=["scores"],
        dynamic_shapes={"x": {0: batch}}, verbose=False,
    )  # fmt: skip
    program.save(str(onnx_path))
    metadata = {"task": model.task.to_config(), "preprocessing": preprocessing, "checkpoint": str(path)}
    if graph_transform:
        metadata["input"] = datamodule.graph_input_contract()
    proto = onnx.load(str(onnx_path))
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, json.dumps(value)
    onnx.save(proto, str(onnx_path))
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    onnx_out = session.run(None, {"input": x.numpy()})[0]

    report = {
        **metadata,
        "outputs": "scores: " + ("probabilities" if model.task.classification else "values"),
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
        print(f"{fmt}: {report[fmt]['path']} max |score difference| {diff:.2e} (tolerance {atol:.0e})")
        if not diff <= atol:
            raise TemplateError(f"{fmt} export differs from PyTorch by {diff:.2e} > {atol:.0e}")
    print(f"export directory: {out_dir}")
    return report


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="make export", description=__doc__.split("\n")[0], allow_abbrev=False
    )
    parser.add_argument("checkpoint", help="a checkpoint file or a run directory")
    parser.add_argument("--out-dir", type=Path, default=None, help="default: <run dir>/export")
    parser.add_argument("--atol", type=float, default=DEFAULT_ATOL)
    args = parser.parse_args(argv)
    export(args.checkpoint, args.out_dir, args.atol)


if __name__ == "__main__":
    main()
