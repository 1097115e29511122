"""Pretrained timm backbones: weights from a local file, an earlier run's checkpoint, or the hub.

`create_backbone(name, weights=...)` returns a timm model without classifier (`num_classes=0`). `weights`:
- a `.safetensors`/`.pth`/`.pt`/`.bin` file with timm key names (e.g. from `make convert-weights`);
- a Lightning `.ckpt` of an earlier run of this template: only its `backbone.` part is loaded;
- `hub`, or a timm name with its tag (`efficientnet_lite0.ra_in1k`): timm downloads it (online only).
Loading reports missing/unexpected keys and refuses a partial load unless `strict=False`.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

import timm
import torch
from timm.models import adapt_input_conv
from torch import nn

from trainforge.errors import ConfigError, TemplateError

log = logging.getLogger(__name__)

FILE_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".ckpt")
HUB_WORDS = ("hub", "pretrained", "timm")
# Wrappers that add a prefix to every key: torch.compile (`_orig_mod.`, #17415) and DDP/DataParallel.
WRAPPER_PREFIX = re.compile(r"(^|\.)(_orig_mod|module)\.")


class WeightsError(TemplateError, ValueError):
    """Weights that cannot be loaded as asked; the message says why and what to do."""


def create_backbone(
    name: str, in_chans: int = 3, weights: str | None = None, strict: bool = True, **kwargs: Any
) -> nn.Module:
    """A timm feature extractor (`num_classes=0`) with optional pretrained `weights` (see module doc)."""
    if not timm.is_model(name) and not name.startswith(("hf-hub:", "hf_hub:", "local-dir:")):
        raise ConfigError(
            f"model.backbone={name}: not a timm model name (`timm.list_models('{name[:4]}*')` lists some)"
        )
    if weights and _is_hub_request(name, weights):
        return _from_hub(name, weights, in_chans, **kwargs)
    model = timm.create_model(name, pretrained=False, num_classes=0, in_chans=in_chans, **kwargs)
    if weights:
        load_backbone_weights(model, weights, strict=strict)
    return model


def _is_hub_request(name: str, weights: str) -> bool:
    if Path(weights).suffix in FILE_SUFFIXES or os.sep in weights or Path(weights).exists():
        return False
    return weights in HUB_WORDS or weights.startswith("hf-hub:") or weights.split(".")[0] == name


def _from_hub(name: str, weights: str, in_chans: int, **kwargs: Any) -> nn.Module:
    model_name = name if weights in HUB_WORDS else weights
    how = (
        "Point at a local file instead: --model.weights=<file>.safetensors (timm key names; for "
        "efficientnet_lite0/1/2 `make convert-weights` writes one) or the .ckpt of an earlier run."
    )
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false") or os.environ.get("TIMM_OFFLINE"):
        raise WeightsError(f"model.weights={weights!r} needs the hub, but HF_HUB_OFFLINE is set. {how}")
    try:
        return timm.create_model(model_name, pretrained=True, num_classes=0, in_chans=in_chans, **kwargs)
    except (OSError, RuntimeError, ValueError) as err:  # network errors surface as OSError subclasses
        raise WeightsError(
            f"could not get pretrained weights {model_name!r} from the hub ({type(err).__name__}: {err}). "
            f"Offline? {how}"
        ) from err


def read_state_dict(path: str | Path) -> tuple[dict[str, torch.Tensor], str]:
    """Tensors of a weights file or Lightning checkpoint, keys cleaned; also says which kind it was."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(
            f"model.weights: file {path} not found. Give a .safetensors/.pth with timm key names "
            "(`make convert-weights` writes one for efficientnet_lite0) or an earlier run's .ckpt"
        )
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return strip_wrappers(load_file(str(path))), "weights"
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - a Lightning checkpoint may pickle hyper-parameters; it is the user's own run
        obj = torch.load(path, map_location="cpu", weights_only=False)
    if isinstance(obj, dict) and "state_dict" in obj and "pytorch-lightning_version" in obj:
        state = strip_wrappers(obj["state_dict"])
        backbone = {k[len("backbone.") :]: v for k, v in state.items() if k.startswith("backbone.")}
        if not backbone:
            raise WeightsError(f"checkpoint {path} has no 'backbone.' weights; was it made by this template?")
        return backbone, "checkpoint"
    for key in ("state_dict", "model", "state_dict_ema"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{path} holds no state dict of tensors (got {type(obj).__name__})")
    state = strip_wrappers(obj)
    if state and all(k.startswith("backbone.") for k in state):
        state = {k[len("backbone.") :]: v for k, v in state.items()}
    return state, "weights"


def strip_wrappers(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop `_orig_mod.`/`module.` wherever torch.compile or DDP put them, so any run's keys match."""
    return {WRAPPER_PREFIX.sub(r"\1", k): v for k, v in state.items()}


def load_backbone_weights(model: nn.Module, weights: str | Path, strict: bool = True) -> dict[str, list[str]]:
    """Load `weights` into `model` (no classifier); returns the report of missing/unexpected keys."""
    state, kind = read_state_dict(weights)
    classifier = (getattr(model, "pretrained_cfg", None) or {}).get("classifier")
    target = model.state_dict()
    dropped = []
    if classifier:  # the pretrained classifier is replaced by our head: not an "unexpected" key
        dropped = [k for k in state if k.split(".")[0] == classifier.split(".")[0] and k not in target]
        state = {k: v for k, v in state.items() if k not in dropped}
    first_conv = (getattr(model, "pretrained_cfg", None) or {}).get("first_conv")
    stem_key = f"{first_conv}.weight" if first_conv else None
    if stem_key in state and stem_key in target and state[stem_key].shape[1] != target[stem_key].shape[1]:
        # RGB weights for a grey (or 4-channel) input: timm's own adaptation of the first convolution
        state[stem_key] = adapt_input_conv(target[stem_key].shape[1], state[stem_key])
    mismatched = [
        f"{k}: file {tuple(v.shape)} vs model {tuple(target[k].shape)}"
        for k, v in state.items()
        if k in target and v.shape != target[k].shape
    ]
    arch = getattr(model, "pretrained_cfg", {}).get("architecture", type(model).__name__)
    if mismatched:
        listed = "\n  ".join(mismatched[:20]) + ("\n  ..." if len(mismatched) > 20 else "")
        raise WeightsError(
            f"{weights} does not fit backbone {arch}: {len(mismatched)} shape mismatches "
            f"(a file of another architecture or size?):\n  {listed}"
        )
    matched = [k for k in state if k in target]
    if not matched:
        raise WeightsError(
            f"{weights}: none of its {len(state)} keys is a key of {arch} (e.g. {next(iter(state), '-')!r} vs "
            f"{next(iter(target), '-')!r}); is it a file for another architecture?"
        )
    missing = [k for k in target if k not in state]
    unexpected = [k for k in state if k not in target]
    report = {"missing": missing, "unexpected": unexpected, "dropped_classifier": dropped}
    if (missing or unexpected) and strict:
        raise WeightsError(
            f"{weights} is a partial match for {arch}: {len(missing)} missing keys {missing[:8]}, "
            f"{len(unexpected)} unexpected keys {unexpected[:8]}. Set --model.strict_weights=false to load "
            "the matching part anyway."
        )
    model.load_state_dict(state, strict=False)
    log.warning(
        "loaded %d/%d backbone tensors from %s (%s); missing %d %s, unexpected %d %s, classifier keys dropped %d",
        len(matched), len(target), weights, kind, len(missing), missing[:8], len(unexpected), unexpected[:8],
        len(dropped),
    )  # fmt: skip
    return report


def check_head_compatible(checkpoint: dict[str, Any], model: nn.Module, head_prefix: str = "head.") -> None:
    """A clear error when a checkpoint's head was trained for another number of classes."""
    own = {k: v.shape for k, v in model.state_dict().items() if k.startswith(head_prefix)}
    theirs = strip_wrappers(checkpoint.get("state_dict", {}))
    for key, shape in own.items():
        if key in theirs and theirs[key].shape != shape:
            raise WeightsError(
                f"checkpoint head {key} has shape {tuple(theirs[key].shape)} but this model needs {tuple(shape)}: "
                "it was trained for another number of classes. To reuse its backbone with the new classes, start "
                "a new fit with --model.weights=<that .ckpt> instead of --ckpt_path."
            )
