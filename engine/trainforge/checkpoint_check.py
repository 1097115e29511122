"""A checkpoint about to be resumed from is read once first, so a broken one fails with its name, untouched."""

from __future__ import annotations

from pathlib import Path

import torch

from trainforge.errors import incompatible_checkpoint


def check_resumable(path: str | Path, use: str = "resume from") -> None:
    """Raise a TemplateError naming `path` if it cannot be read or is not a Lightning checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise incompatible_checkpoint(str(path), use=use, reason="the file does not exist")
    try:
        # mmap: no copy of the weights in memory; Lightning loads the file again to restore it.
        checkpoint = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    except Exception as error:  # torch raises several types for a truncated or foreign file
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise incompatible_checkpoint(
            str(path), use=use, reason=f"it cannot be read (corrupt or truncated: {reason})"
        ) from error
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise incompatible_checkpoint(
            str(path), use=use, reason="it is not a Lightning checkpoint (no 'state_dict' in it)"
        )
