"""The import graph keeps the design's boundaries (DESIGN.md): a report reads files only, and
the harness never looks inside a method.

The graph is read statically with `ast` from every module of bench/ and methods/: every
`import` and `from ... import` anywhere in a module (inside functions and `if TYPE_CHECKING:`
blocks too), relative imports resolved, `from bench import x` read as the module bench.x, and
`importlib.import_module("literal")` calls (how the registry loads the methods).
"""

from __future__ import annotations

import ast
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("bench", "methods")

# Code that makes a report or a figure: it reads run folders, nothing else.
REPORT_MODULES = ("bench.report", "bench.report_*", "bench.plots")
# What such code must never reach, and why.
REPORT_MUST_NOT_REACH = {
    "bench.runner": "trains runs",
    "bench.launch": "launches runs",
    "bench.config": "composes today's config (a run's own is its saved config.yaml)",
    "methods": "is the methods' code",
}
# The one door from the harness into the methods: the registry imports the package, whose
# __init__ registers every method.
REGISTRY = "bench.registry"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def sources() -> dict[str, Path]:
    return {
        module_name(path): path
        for package in PACKAGES
        for path in sorted((REPO / package).rglob("*.py"))
    }


def _imported(node: ast.AST, module: str, is_package: bool) -> Iterable[str]:
    """The dotted names one node imports (a module, or a module followed by a name in it)."""
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom):
        if node.level:
            package = module.split(".") if is_package else module.split(".")[:-1]
            package = package[: len(package) - (node.level - 1)]
            base = ".".join([*package, *([node.module] if node.module else [])])
        else:
            base = node.module or ""
        yield base
        yield from (f"{base}.{alias.name}" for alias in node.names)
    elif isinstance(node, ast.Call) and node.args:
        function = node.func
        name = function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", "")
        argument = node.args[0]
        if name in ("import_module", "__import__") and isinstance(argument, ast.Constant):
            if isinstance(argument.value, str):
                yield argument.value


def import_graph() -> dict[str, set[str]]:
    """Module -> the modules of bench/ and methods/ it imports (with their parent packages,
    whose __init__ runs first)."""
    files = sources()
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        is_package = path.name == "__init__.py"
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            for name in _imported(node, module, is_package):
                parts = name.split(".")
                edges.update(
                    ".".join(parts[:end])
                    for end in range(1, len(parts) + 1)
                    if ".".join(parts[:end]) in files
                )
        edges.discard(module)
        graph[module] = edges
    return graph


def path_to(
    graph: Mapping[str, set[str]], start: str, reached: Callable[[str], bool]
) -> list[str] | None:
    """The shortest import chain from `start` to a module for which `reached` holds, or None."""
    came_from: dict[str, str | None] = {start: None}
    queue = deque([start])
    while queue:
        module = queue.popleft()
        if reached(module) and module != start:
            chain = [module]
            while came_from[chain[-1]] is not None:
                chain.append(came_from[chain[-1]])
            return chain[::-1]
        for imported in sorted(graph.get(module, ())):
            if imported not in came_from:
                came_from[imported] = module
                queue.append(imported)
    return None


def _within(module: str, target: str) -> bool:
    return module == target or module.startswith(target + ".")


def _is_report_module(module: str) -> bool:
    return any(
        module == pattern or (pattern.endswith("*") and module.startswith(pattern[:-1]))
        for pattern in REPORT_MODULES
    )


def test_the_graph_sees_function_level_and_dynamic_imports():
    graph = import_graph()
    assert "bench.runner" in graph["bench.cli"]  # imported inside main()
    assert "bench.data.prepare" in graph["bench.slurm"]  # a `from` import at the top
    assert "methods" in graph[REGISTRY]  # importlib.import_module("methods")
    assert "methods.harmodt" in graph["methods"]  # `from methods import harmodt`
    assert path_to(graph, "bench.cli", lambda m: _within(m, "methods")) is not None


def test_no_import_path_leads_from_report_or_plots_to_runs_or_methods():
    graph = import_graph()
    report_modules = sorted(m for m in graph if _is_report_module(m))
    assert {"bench.report", "bench.plots", "bench.report_ablations"} <= set(report_modules)
    problems = []
    for module in report_modules:
        for target, why in REPORT_MUST_NOT_REACH.items():
            chain = path_to(graph, module, lambda m, t=target: _within(m, t))
            if chain is not None:
                problems.append(f"{' → '.join(chain)}: {target} {why}")
    assert not problems, "a report reads files only, yet:\n" + "\n".join(problems)


def test_the_harness_reaches_methods_only_through_the_registry():
    graph = import_graph()
    problems = []
    for module, imported in sorted(graph.items()):
        if _within(module, "methods"):
            continue
        allowed = {"methods"} if module == REGISTRY else set()
        inside = sorted(m for m in imported if _within(m, "methods") and m not in allowed)
        problems += [f"{module} → {m}" for m in inside]
    assert not problems, (
        "bench/ imports a method's internals (only bench.registry imports `methods`):\n"
        + "\n".join(problems)
    )
