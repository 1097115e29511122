"""User-facing errors: one clear message on stderr, a non-zero exit, the traceback only when debugging.

Raise `TemplateError` for anything the user can fix (a path, a key, a value, a file). `main()` turns it,
jsonargparse's argument errors and missing files into one message; `--debug` or `TRAINFORGE_DEBUG=1` shows
the traceback instead.
"""

from __future__ import annotations

import difflib
import errno
import os
import sys
import traceback
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

DEBUG_ENV = "TRAINFORGE_DEBUG"
DEBUG_FLAG = "--debug"
EXIT_CODE = 2
DISK_FULL = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}


class TemplateError(Exception):
    """An error the user can fix: the message names the culprit and says what to do."""


class ConfigError(TemplateError):
    """A configuration the run cannot start with (unknown key, wrong type, impossible value)."""


def pop_debug_flag(argv: list[str]) -> tuple[list[str], bool]:
    """Remove `--debug` from argv; debugging is on with the flag or with TRAINFORGE_DEBUG=1."""
    debug = DEBUG_FLAG in argv or os.environ.get(DEBUG_ENV, "").lower() in ("1", "true", "yes")
    return [a for a in argv if a != DEBUG_FLAG], debug


def closest(name: str, candidates: Iterable[str]) -> str | None:
    """The candidate most like `name`: the only key it abbreviates, else difflib's closest, compared on the
    full key and on its last part."""
    candidates = sorted(set(candidates))
    # Abbreviations are refused (allow_abbrev=False), so the key the user shortened is the likeliest meant.
    extensions = [c for c in candidates if c.startswith(name) and c != name]
    if len(extensions) == 1:
        return extensions[0]
    match = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    if match:
        return match[0]
    tail = name.rsplit(".", 1)[-1]
    by_tail = {c.rsplit(".", 1)[-1]: c for c in candidates if c.startswith(name.rsplit(".", 1)[0] + ".")}
    match = difflib.get_close_matches(tail, list(by_tail), n=1, cutoff=0.6)
    return by_tail[match[0]] if match else None


def _template_cause(error: BaseException) -> TemplateError | None:
    """The TemplateError that `error` was raised from, if any: jsonargparse re-raises an error of a class's
    `__init__` as a ValueError about union subtypes, `from` the original."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, TemplateError):
            return seen
        seen = seen.__cause__
    return None


def _original(error: BaseException) -> BaseException:
    """The exception at the bottom of a `raise ... from` chain (jsonargparse's union-subtype ValueError
    wraps what a class's `__init__` raised)."""
    while error.__cause__ is not None:
        error = error.__cause__
    return error


def _user_frame(error: BaseException) -> tuple[str | None, str | None]:
    """The class whose `__init__` raised (from the frames' `self`), and the deepest frame outside the
    installed libraries and the standard library, as `file:line`."""
    owner, where = None, None
    library = (os.sep + "site-packages" + os.sep, os.sep + "lib" + os.sep + "python3")
    for frame, line in traceback.walk_tb(error.__traceback__):
        code = frame.f_code
        if owner is None and code.co_name == "__init__" and "self" in frame.f_locals:
            cls = type(frame.f_locals["self"])
            owner = f"{cls.__module__}.{cls.__qualname__}"
        if not any(part in code.co_filename for part in library) and not code.co_filename.startswith("<"):
            where = f"{code.co_filename}:{line}"
    return owner, where


def construction_error(error: BaseException) -> TemplateError | None:
    """What a class built from the config (a DataModule, a model...) raised in `__init__`, as one line
    naming the class, the error and the file:line it came from; None when it is already a TemplateError."""
    if not isinstance(error, Exception) or _template_cause(error) is not None:
        return None
    original = _original(error)
    owner, where = _user_frame(original)
    if isinstance(original, FileNotFoundError) and original.filename:
        detail = f"file not found: {original.filename}"
    else:
        text = str(original).strip().splitlines()
        detail = f"{type(original).__name__}: {text[0] if text else '(no message)'}"
    built = f"building {owner}" if owner else "building the configured classes"
    at = f" (raised at {where})" if where else ""
    return TemplateError(f"{built}: {detail}{at}")


def is_user_error(error: BaseException) -> bool:
    if isinstance(error, FileNotFoundError) or _template_cause(error) is not None:
        return True
    return type(error).__name__ == "ArgumentError" and type(error).__module__.startswith(
        ("jsonargparse", "argparse")
    )


def user_message(error: BaseException) -> str:
    if isinstance(error, FileNotFoundError) and error.filename:
        return f"file not found: {error.filename}. Check the path (relative paths start in {os.getcwd()})."
    return str(_template_cause(error) or error).strip()


def report(error: BaseException, debug: bool) -> int:
    """Print a user-facing error (the traceback only when debugging) and return the exit code."""
    if debug:
        traceback.print_exception(error)
    message = user_message(error)
    if not message.startswith("error"):
        message = f"error: {message}"
    hint = "" if debug else f"\n(run again with {DEBUG_FLAG} or {DEBUG_ENV}=1 for the full traceback)"
    print(message + hint, file=sys.stderr, flush=True)
    return EXIT_CODE


# ----------------------------------------------------------------------------- training errors
def _is_oom(error: BaseException) -> bool:
    oom = getattr(__import__("torch"), "OutOfMemoryError", None)
    return (oom is not None and isinstance(error, oom)) or "out of memory" in str(error).lower()


@contextmanager
def training_errors(batch_size: int | None, checkpoint: str | None) -> Iterator[None]:
    """Re-raise out-of-memory, full-disk and unloadable-checkpoint failures as TemplateErrors."""
    try:
        yield
    except TemplateError:
        raise
    except (RuntimeError, MemoryError) as error:
        if _is_oom(error):
            raise TemplateError(
                f"out of memory with data.batch_size={batch_size} (the global batch; each device loads its "
                f"share). `--data.max_batch_per_device={max(1, (batch_size or 2) // 2)}` (or lower) keeps the "
                "same optimisation by gradient accumulation; `make bs-find` finds what one device holds."
            ) from error
        if checkpoint and "state_dict" in str(error):
            raise incompatible_checkpoint(checkpoint, str(error).splitlines()[0]) from error
        raise
    except OSError as error:
        if error.errno in DISK_FULL:
            where = error.filename or "a file in the run directory"
            raise TemplateError(
                f"the disk is full (or a file-size limit was hit) while writing {where}: {error.strerror}. "
                "Checkpoints written before are kept; free space and rerun the same command to resume."
            ) from error
        raise


def incompatible_checkpoint(path: str, reason: str, use: str = "resume from") -> TemplateError:
    kept = " The file is left in place." if os.path.exists(path) else ""
    if use != "resume from":
        return TemplateError(f"cannot {use} checkpoint {path}: {reason}.{kept} Give another --ckpt_path.")
    return TemplateError(
        f"cannot resume from checkpoint {path}: {reason}.{kept} Start over with "
        "`--run.fresh=true` (the earlier run directory is kept, renamed), use another run name "
        "(`--run.name=<new>`), or resume from another checkpoint with `--ckpt_path=<file>`."
    )
