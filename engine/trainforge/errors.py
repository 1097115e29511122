"""User-facing errors: one clear message on stderr, a non-zero exit, the traceback only when debugging.

Raise `TemplateError` for anything the user can fix (a path, a key, a value, a file). `main()` turns it,
jsonargparse's argument errors and missing files into one message; `--debug` or `TRAINFORGE_DEBUG=1` shows
the traceback instead.
"""

from __future__ import annotations

import difflib
import errno
import importlib
import inspect
import os
import re
import sys
import traceback
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

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
    """The candidate most like `name` (difflib), compared on the full key and on its last part."""
    candidates = sorted(set(candidates))
    match = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    if match:
        return match[0]
    tail = name.rsplit(".", 1)[-1]
    by_tail = {c.rsplit(".", 1)[-1]: c for c in candidates if c.startswith(name.rsplit(".", 1)[0] + ".")}
    match = difflib.get_close_matches(tail, list(by_tail), n=1, cutoff=0.6)
    return by_tail[match[0]] if match else None


def is_user_error(error: BaseException) -> bool:
    if isinstance(error, (TemplateError, FileNotFoundError)):
        return True
    return type(error).__name__ == "ArgumentError" and type(error).__module__.startswith(
        ("jsonargparse", "argparse")
    )


def user_message(error: BaseException) -> str:
    if isinstance(error, FileNotFoundError) and error.filename:
        return f"file not found: {error.filename}. Check the path (relative paths start in {os.getcwd()})."
    return str(error).strip()


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


# ----------------------------------------------------------------------------- argument errors
_NOT_ACCEPTED = re.compile(r"Option '([^']+)' is not accepted")
_KEY_NOT_EXPECTED = re.compile(r"[Kk]ey[s]? '?\"?([\w.\-]+)'?\"? (?:is|are) not expected")
_UNRECOGNIZED = re.compile(r"Unrecognized arguments?: (.+)", re.IGNORECASE)
_CLASS_PATH = re.compile(r"class_path '([\w.]+)'")
_GROUP = re.compile(r'Parser key "(\w+)"')
_EXPECTED = re.compile(r'Parser key "([^"]+)":\s*\n\s*(Expected a [^\n]+)')
_BAD_CLASS_PATH = re.compile(r"Problem with given class_path '([\w.]+)':\s*\n\s*([^\n]+)")


def explain_argument_error(message: str, valid_keys: Iterable[str], subcommand: str | None) -> str:
    """Turn jsonargparse's nested message into one sentence naming the key, with the closest valid key."""
    valid = set(valid_keys)
    groups = _GROUP.findall(message)
    group = groups[0] if groups and groups[0] in ("model", "data") else None
    if group:  # subclass mode: the valid keys are the chosen class's init arguments
        valid |= {f"{group}.{k}" for k in _init_args(message)}
    help_hint = f"`python -m trainforge {subcommand or 'fit'} --help` lists every key."
    unknown = _NOT_ACCEPTED.findall(message) or _KEY_NOT_EXPECTED.findall(message)
    unrecognized = _UNRECOGNIZED.search(message)
    if unrecognized:
        unknown += [
            a.split("=", 1)[0].lstrip("-") for a in unrecognized.group(1).split() if a.startswith("--")
        ]
    if unknown:
        key = unknown[0]
        full = f"{group}.{key}" if group and not key.startswith(group + ".") else key
        full = full.replace(".init_args.", ".")
        suggestion = closest(full, valid)
        mean = f" Did you mean '{suggestion}'?" if suggestion else ""
        return f"error: unknown config key '{full}'.{mean} {help_hint}"
    bad_class = _BAD_CLASS_PATH.search(message)
    if bad_class and ("has no attribute" in bad_class.group(2) or "No module named" in bad_class.group(2)):
        path, reason = bad_class.groups()
        found = find_class(path.rsplit(".", 1)[-1], (path.split(".")[0], "trainforge"))
        mean = f" Did you mean '{found}'?" if found else " Give the full path: module.ClassName."
        key = f"'{group}'" if group else "a class_path"
        return f"error: {key}: cannot import '{path}' ({reason.strip()}).{mean} {help_hint}"
    expected = _EXPECTED.search(message)
    if expected:
        key = expected.group(1)
        full = f"{group}.{key}" if group and not key.startswith(group) else key
        what = re.sub(r"<class '([\w.]+)'>", r"\1", expected.group(2).strip())
        return f"error: wrong type for '{full}': {what}. {help_hint}"
    first = next((line.strip() for line in message.splitlines() if line.strip()), message)
    return f"error: {first} {help_hint}"


def _init_args(message: str) -> list[str]:
    match = _CLASS_PATH.search(message)
    if not match:
        return []
    module, _, name = match.group(1).rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
        return [p for p in inspect.signature(cls).parameters if p not in ("args", "kwargs")]
    except Exception:  # a suggestion is a nicety: never let it hide the real error
        return []


def find_class(name: str, packages: Iterable[str] = ("trainforge",)) -> str | None:
    """The full import path of a class called `name` in the given packages' modules, if there is one."""
    import pkgutil

    for package in dict.fromkeys(packages):
        try:
            root = importlib.import_module(package)
        except Exception:  # a package that cannot be imported holds nothing to suggest
            continue
        for info in pkgutil.walk_packages(getattr(root, "__path__", []), f"{package}."):
            try:
                module = importlib.import_module(info.name)
            except Exception:  # a module that fails to import is not the one the user meant
                continue
            if inspect.isclass(getattr(module, name, None)):
                return f"{info.name}.{name}"
    return None


def parser_keys(parser: Any, subcommand: str | None) -> list[str]:
    """Every dotted key a (sub)command's parser accepts."""
    if subcommand:
        parser = parser._subcommands_action._name_parser_map[subcommand]
    keys = []
    for action in parser._actions:
        dest = getattr(action, "dest", "")
        if dest and dest not in ("help", "config", "print_config"):
            keys.append(dest)
    return keys


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
                f"out of memory with batch size {batch_size} per device. Lower it with "
                f"`--data.batch_size={max(1, (batch_size or 2) // 2)}`, or find the largest that fits with "
                "`make bs-find`; `--trainer.accumulate_grad_batches=2` keeps the effective batch size."
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


def incompatible_checkpoint(path: str, reason: str) -> TemplateError:
    kept = " The file is left in place." if os.path.exists(path) else ""
    return TemplateError(
        f"cannot resume from checkpoint {path}: {reason}.{kept} Start over with "
        "`--run.fresh=true` (the earlier run directory is kept, renamed), use another run name "
        "(`--run.name=<new>`), or resume from another checkpoint with `--ckpt_path=<file>`."
    )
