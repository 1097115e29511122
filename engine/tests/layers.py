"""The engine's import layering, checked from the source (AST): imports flow one way, and there is no cycle.

A hand-written check rather than import-linter: that is not a dependency of the template, and ~100 lines
also report a module that no layer names (import-linter's layers contract ignores one unless told).

LAYERS runs top to bottom; a module may import from its own layer and the layers below it, never above.
Every import counts, including one inside a function (a lazy import hides a dependency, it does not remove
it). A new top-level module or package under trainforge/ must be placed here (and in docs/engine.md).
"""

from __future__ import annotations

import ast
from pathlib import Path

LAYERS: list[tuple[str, list[str]]] = [
    ("entry", ["__main__", "entry"]),  # `python -m <project>`: a tool by name, else the CLI
    # export, predict, sweep, tune, scaffold, update, ...: they run the CLI; so does the submitit job.
    ("tools", ["tools", "cluster.submit"]),
    ("launch", ["launch"]),  # the CLI started from argv
    ("cli", ["cli"]),  # TemplateCLI: wires a run together
    ("run", ["finish", "validation", "predictions", "loggers", "summary", "optimism", "reporting"]),
    ("models", ["models"]),
    ("training", ["training"]),
    ("checkpoints", ["checkpoints"]),  # a trained run loaded back (distillation's teacher, tools)
    ("data", ["data"]),
    ("tasks", ["tasks"]),
    # Helpers that know no model, data or task; the cluster's job environment is read by rundir and data.
    (
        "base",
        ["errors", "rundir", "gitinfo", "config_files", "argument_errors", "checkpoint_check", "cluster"],
    ),
]


def module_name(path: Path, root: Path) -> str:
    """`trainforge.tasks.base` for root/trainforge/tasks/base.py, `trainforge.tasks` for its __init__.py."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(tree: ast.AST, module: str, is_package: bool, known: set[str]) -> set[str]:
    """The trainforge modules `module` imports anywhere in its body; `from a import b` counts as a.b when
    a.b is a module."""
    package = module if is_package else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            source = node.module if not node.level else ".".join(p for p in (base, node.module) if p)
            if not source:
                continue
            for alias in node.names:
                found.add(f"{source}.{alias.name}" if f"{source}.{alias.name}" in known else source)
    return {name for name in found if name.split(".")[0] == "trainforge" and name != module}


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the trainforge modules it imports, for every .py under root/trainforge."""
    files = {module_name(path, root): path for path in sorted((root / "trainforge").rglob("*.py"))}
    known = set(files)
    return {
        name: imported(ast.parse(path.read_text(), str(path)), name, path.name == "__init__.py", known)
        for name, path in files.items()
    }


def layer_of(module: str) -> int | None:
    """The index of the layer holding `module`: the longest placed name it starts with (`cluster.submit`
    before `cluster`); None when unplaced."""
    parts = module.split(".")
    if len(parts) == 1:
        return len(LAYERS) - 1  # trainforge/__init__.py: the version only, importable from anywhere
    placed = {unit: index for index, (_, units) in enumerate(LAYERS) for unit in units}
    for end in range(len(parts), 1, -1):
        if ".".join(parts[1:end]) in placed:
            return placed[".".join(parts[1:end])]
    return None


def violations(root: Path) -> list[str]:
    """One line per unplaced module, upward import and cycle; empty when the layering holds."""
    graph = import_graph(root)
    problems: list[str] = []
    unplaced = sorted({m.split(".")[1] for m in graph if layer_of(m) is None})
    problems += [
        f"trainforge.{unit} is in no layer: add it to LAYERS in engine/tests/layers.py (and docs/engine.md)"
        for unit in unplaced
    ]
    for module, targets in sorted(graph.items()):
        here = layer_of(module)
        for target in sorted(targets):
            there = layer_of(target)
            if here is not None and there is not None and there < here:
                problems.append(
                    f"upward import: {module} ({LAYERS[here][0]}) imports {target} ({LAYERS[there][0]})"
                )
    problems += ["import cycle: " + " <-> ".join(sorted(group)) for group in cycles(graph)]
    return problems


def cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The groups of modules that import each other, directly or around a loop (Tarjan's components)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph.get(node, ()):
            if target not in graph:
                continue
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups
