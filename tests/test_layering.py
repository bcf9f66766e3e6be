"""Import layering of `kgsearch/` and `trainables/`, read with `ast`: nothing under test is imported,
so the check needs neither torch nor Ray, and a bad import is reported rather than crashing collection."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("kgsearch", "trainables")
MAX_LINES = 400
LAYER_NAMES = ["foundation", "data", "registry", "models", "run", "entry points", "binders"]
FOUNDATION = {"kgsearch", "kgsearch.errors", "kgsearch.yamlio", "kgsearch.provenance", "kgsearch.cache",
              "kgsearch.precision", "kgsearch.sharding", "kgsearch.config", "kgsearch.overrides",
              "kgsearch.progress", "kgsearch.allocator"}


def _module_files() -> dict[str, Path]:
    files = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return files


MODULES = _module_files()


def _under(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def layer_of(name: str) -> int | None:
    """The layer of a module, or None when no rule places it (a new module nobody has placed yet)."""
    if name in FOUNDATION:
        return 0
    if _under(name, "kgsearch.data") or name == "kgsearch.evaluation":
        return 1
    if name == "kgsearch.recipe":
        return 2
    if _under(name, "kgsearch.run"):
        return 4
    if _under(name, "kgsearch.sweep") or name == "kgsearch.train":
        return 5
    if _under(name, "trainables"):
        return 6
    # Any other kgsearch subpackage is a model/recipe package, so a new one is checked unedited.
    # A top-level module (kgsearch/foo.py) is not: its place must be decided here.
    if name.startswith("kgsearch.") and len(MODULES[name].relative_to(ROOT).parts) >= 3:
        return 3
    return None


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imported_names(tree: ast.AST, module: str, is_package: bool):
    """Every module named by an import statement, lazy ones included, TYPE_CHECKING blocks excluded."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)  # annotations only: no runtime dependency
            continue
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                # `from . import x` is relative to the package: the module itself for an __init__.
                base = module.split(".")[: len(module.split(".")) - node.level + is_package]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            yield target  # Python runs the package (or module) named in `from` in any case
            yield from (f"{target}.{alias.name}" for alias in node.names if f"{target}.{alias.name}" in MODULES)
        stack.extend(ast.iter_child_nodes(node))


def _build_graph() -> dict[str, set[str]]:
    graph = {}
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        names = _imported_names(tree, module, path.name == "__init__.py")
        graph[module] = {name for name in names if name in MODULES and name != module}
    return graph


GRAPH = _build_graph()


def _edges():
    return sorted((src, dst) for src, dsts in GRAPH.items() for dst in dsts)


def test_every_module_sits_in_a_layer():
    unplaced = [name for name in MODULES if layer_of(name) is None]
    assert not unplaced, f"modules in no layer: add them to a layer in {Path(__file__).name}: {unplaced}"


def test_no_module_imports_a_higher_layer():
    violations = [
        f"{src} -> {dst} (layer {LAYER_NAMES[layer_of(src)]} imports higher layer {LAYER_NAMES[layer_of(dst)]})"
        for src, dst in _edges()
        if None not in (layer_of(src), layer_of(dst)) and layer_of(dst) > layer_of(src)
    ]
    assert not violations, "imports of a higher layer:\n" + "\n".join(violations)


def test_train_and_sweep_entry_points_do_not_import_each_other():
    violations = [f"{src} -> {dst}" for src, dst in _edges()
                  if (src == "kgsearch.train" and _under(dst, "kgsearch.sweep"))
                  or (_under(src, "kgsearch.sweep") and dst == "kgsearch.train")]
    assert not violations, "kgsearch.train and kgsearch.sweep must stay independent:\n" + "\n".join(violations)


def test_kgsearch_never_imports_trainables():
    # The sweep finds `trainables.<model>` with importlib by name; an import statement would invert that.
    violations = [f"{src} -> {dst}" for src, dst in _edges() if _under(src, "kgsearch") and _under(dst, "trainables")]
    assert not violations, "kgsearch must not import trainables:\n" + "\n".join(violations)


def _cycles() -> list[list[str]]:
    """One cycle per back edge of a depth-first search: enough to show every tangle, each a path."""
    state, path, found = {}, [], []

    def visit(node: str) -> None:
        state[node] = "open"
        path.append(node)
        for nxt in sorted(GRAPH[node]):
            if state.get(nxt) == "open":
                found.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = "done"

    for node in sorted(GRAPH):
        if node not in state:
            visit(node)
    return found


def test_no_import_cycles():
    cycles = _cycles()
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(cycle) for cycle in cycles)


def test_no_module_is_over_400_lines():
    too_long = [f"{path.relative_to(ROOT)}: {n} lines" for path in MODULES.values()
                if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES]
    assert not too_long, f"modules over {MAX_LINES} lines (split them):\n" + "\n".join(too_long)
