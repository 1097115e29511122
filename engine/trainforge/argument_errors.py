"""jsonargparse's argument errors as one sentence: the key (with the closest valid key for a typo), the
expected type or the valid values, and what to do. Used by the CLI's `parse_arguments`."""

from __future__ import annotations

import ast
import difflib
import importlib
import inspect
import re
import sys
from collections.abc import Iterable
from typing import Any

from trainforge.errors import closest

_NOT_ACCEPTED = re.compile(r"Option '([^']+)' is not accepted")
_KEY_NOT_EXPECTED = re.compile(r"[Kk]ey[s]? '?\"?([\w.\-]+)'?\"? (?:is|are) not expected")
_UNRECOGNIZED = re.compile(r"Unrecognized arguments?: (.+)", re.IGNORECASE)
_CLASS_PATH = re.compile(r"class_path '([\w.]+)'")
_GROUP = re.compile(r'Parser key "(\w+)"')
_BAD_CLASS_PATH = re.compile(r"Problem with given class_path '([\w.]+)':\s*\n\s*([^\n]+)")


def explain_argument_error(
    error: str | BaseException, valid_keys: Iterable[str], subcommand: str | None
) -> str:
    """Turn jsonargparse's nested message into one sentence naming the key, with the closest valid key.
    Given the exception, the messages of its whole `from` chain are searched for the selected class."""
    message = str(error)
    chain = _chain_text(error) if isinstance(error, BaseException) else message
    valid = {k for k in valid_keys if k.rsplit(".", 1)[-1] != "help"}  # --help is no one's misspelt key
    groups = _GROUP.findall(message)
    group = groups[0] if groups and groups[0] in ("model", "data") else None
    selected = _init_args(chain) if group else []
    if selected:  # subclass mode: the valid keys are the selected class's init arguments, its bases' too
        valid = {k for k in valid if not k.startswith(group + ".")} | {f"{group}.{k}" for k in selected}
    help_hint = f"`python -m {_package()} {subcommand or 'fit'} --help` lists every key."
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
    wrong = _wrong_value(message)
    if wrong is not None:
        return f"error: {wrong} {help_hint}"
    first = next((line.strip() for line in message.splitlines() if line.strip()), message)
    return f"error: {first} {help_hint}"


# jsonargparse nests one `Parser key "<key>":` block per level (a subclass group, then its init argument),
# each with the accepted types (`Expected a <type>` or a union's `Subtypes: [...]`) and the given value.
_PARSER_KEY = re.compile(r'^(?P<indent>\s*)(?:- )?Parser key "(?P<key>[^"]+)":\s*(?P<rest>.*)$')
_SINGLE = re.compile(r"^(?:- )?Expected a (?P<type>.+?)(?:\. Got value: (?P<given>.*))?$")
_CLASS = re.compile(r"<class '([\w.]+)'>")
_WORDS = {
    "int": "an int",
    "float": "a float",
    "str": "a string",
    "bool": "true/false",
    "NoneType": "null",
    "list": "a list",
    "tuple": "a list",
    "dict": "a mapping",
    "pathlib.Path": "a path",
}
_PLURALS = {"int": "ints", "float": "floats", "str": "strings", "bool": "booleans"}
_SEQUENCES = {"list", "List", "tuple", "Tuple", "Sequence", "set", "Set", "Iterable"}
_MAPPINGS = {"dict", "Dict", "Mapping", "MutableMapping"}


def _wrong_value(message: str) -> str | None:
    """The innermost `Parser key` block as one sentence: "wrong type (or invalid value) for '<key>':
    expected <types or values> (got '<value>')", or "'<key>': <its first line>" when it names no type."""
    lines = message.splitlines()
    found = [(i, m) for i, line in enumerate(lines) if (m := _PARSER_KEY.match(line))]
    if not found:
        return None
    start, deepest = found[-1]
    depth = len(deepest["indent"])
    chain, level = [deepest["key"]], depth
    for _, outer in reversed(found[:-1]):  # the enclosing blocks are the less indented ones above
        if len(outer["indent"]) < level:
            chain.append(outer["key"])
            level = len(outer["indent"])
    key = ".".join(reversed(chain)).replace(".init_args.", ".")  # users write `model.lr`
    block = [deepest["rest"].strip()]
    for line in lines[start + 1 :]:
        if line.strip() and len(line) - len(line.lstrip()) <= depth:
            break
        block.append(line.strip())
    block = [line for line in block if line]
    types: list[str] = []
    given = None
    for line in block:  # the first of each belongs to this block, later ones to nested errors
        if not types and line.startswith("Subtypes: ["):
            types = _split_types(line[len("Subtypes: [") : -1])
        elif given is None and line.startswith("Given value: "):
            given = line[len("Given value: ") :]
    single = _SINGLE.match(block[0]) if block else None
    if not types and single:
        types, given = [single["type"]], given if given is not None else single["given"]
    if not types:
        detail = block[0].lstrip("- ").rstrip(".") if block else "invalid value"
        return f"'{key}': {detail}."
    accepted, values = _accepted(types)
    got = "" if given is None else f" (got {given})" if given[:1] in "[{" else f" (got '{given}')"
    close = difflib.get_close_matches(given or "", [str(v) for v in values], n=1, cutoff=0.8)
    mean = f" Did you mean '{close[0]}'?" if close else ""
    what = "invalid value" if values else "wrong type"
    return f"{what} for '{key}': expected {accepted}{got}.{mean}"


def _split_types(text: str) -> list[str]:
    """Split jsonargparse's list of type reprs on the commas outside brackets and quotes."""
    parts, current, depth, quote = [], "", 0, ""
    for char in text:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "[(<":
            depth += 1
        elif char in "])>":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(current.strip())
            current = ""
            continue
        current += char
    return [p for p in [*parts, current.strip()] if p]


def _accepted(types: list[str]) -> tuple[str, list[Any]]:
    """Plain words for the accepted types ("an int or null", "one of '16-mixed', ..."), and the valid
    values of the Literal types among them."""
    values: list[Any] = []
    words: list[str] = []
    for text in types:
        if re.match(r"(typing\.)?Literal\[", text):
            try:
                values += ast.literal_eval(f"[{text[text.index('[') + 1 : -1]}]")
                continue
            except (ValueError, SyntaxError):  # not plain values: show the type as written
                pass
        words.append(_type_words(text))
    # Strings first: Lightning's modern spellings ('16-mixed') before its legacy ints (16); one of '16'/16.
    ordered = [v for v in values if isinstance(v, str)] + [v for v in values if not isinstance(v, str)]
    unique: dict[str, Any] = {}
    for v in ordered:
        unique.setdefault(str(v), v)
    words.sort(key=lambda w: w == "null")  # null (the default) last
    items = [repr(v) for v in unique.values()] + list(dict.fromkeys(words))
    if len(unique) > 1:
        return "one of " + ", ".join(items), list(unique.values())
    text = items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]
    return text, list(unique.values())


def _type_words(text: str) -> str:
    plain = _CLASS.fullmatch(text)
    if plain:
        return _WORDS.get(plain[1], f"a {plain[1].rsplit('.', 1)[-1]}")
    head, _, inner = text.partition("[")
    head = head.rsplit(".", 1)[-1]
    if head in _MAPPINGS:
        return "a mapping"
    if head in _SEQUENCES:
        args = _split_types(inner[:-1])
        element = _CLASS.sub(r"\1", args[0]) if args else ""
        if re.fullmatch(r"[\w.]+", element):
            return f"a list of {_PLURALS.get(element, element.rsplit('.', 1)[-1] + 's')}"
        return "a list"
    return "a " + _CLASS.sub(r"\1", text)


def _chain_text(error: BaseException) -> str:
    texts = []
    while error is not None:
        texts.append(str(error))
        error = error.__cause__ or error.__context__  # type: ignore[assignment]
    return "\n".join(texts)


def _package() -> str:
    """The package the user ran (`python -m template` -> template), for the hints."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    parent = getattr(spec, "parent", None) or ""
    return parent if parent and not parent.startswith(("pytest", "_pytest")) else "trainforge"


def _init_args(message: str) -> list[str]:
    """The init arguments of the class a message names (`class_path '...'`) and of its bases: a subclass
    passes `**kwargs` on, so its own signature alone hides the base's keys."""
    match = _CLASS_PATH.search(message)
    if not match:
        return []
    module, _, name = match.group(1).rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
    except Exception:  # a suggestion is a nicety: never let it hide the real error
        return []
    return init_arguments(cls)


def init_arguments(cls: type) -> list[str]:
    """The keyword arguments `cls(...)` takes: its own `__init__`'s and those its bases receive through
    `**kwargs` (Lightning's and torch's own classes excluded)."""
    names: list[str] = []
    for base in cls.__mro__:
        init = base.__dict__.get("__init__")
        if init is None or base.__module__.startswith(("lightning", "torch", "builtins")):
            continue
        try:
            parameters = inspect.signature(init).parameters.values()
        except (TypeError, ValueError):
            continue
        names += [
            p.name for p in parameters if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]
        if not any(p.kind == p.VAR_KEYWORD for p in parameters):
            break  # no **kwargs: the bases' arguments are not reachable from the config
    return list(dict.fromkeys(names))


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
        if dest and dest != "help":  # `config` and `print_config` stay: `--conf` means `--config`
            keys.append(dest)
    return keys
