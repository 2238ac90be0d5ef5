"""The packages depend one way: data -> models -> (train, similarity) -> stitch ->
(interpret, compress) -> sweep -> report -> cli. Every import of the package, at module level
or inside a function, is read from the source; an import against the order, a cycle between
packages, or another package's private name fails here."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "plato"

# Each unit may import the units of lower layers only (and itself).
LAYERS = [
    {"errors", "files", "jsonable"},
    {"device", "settings", "stats", "stopping"},
    {"data"},
    {"models"},
    {"checkpoint"},
    {"train", "similarity"},
    {"stitch"},
    {"interpret", "compress"},
    {"sweep"},
    {"report"},
    {"cli"},
]
LAYER = {unit: i for i, units in enumerate(LAYERS) for unit in units}


def unit_of(module: str) -> str:
    """plato.sweep.jobs -> sweep; plato -> plato (the package's facade)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "plato"


def module_of(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"]
    return ".".join(parts)


def imports(path: Path) -> list[tuple[str, list[str], int]]:
    """(imported module, names taken from it, line) of every plato import in a file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(a.name, [], node.lineno) for a in node.names
                      if a.name.split(".")[0] == "plato"]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 \
                and node.module.split(".")[0] == "plato":
            found.append((node.module, [a.name for a in node.names], node.lineno))
    return found


def package_imports() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in SRC.rglob("*.py"):
        unit = unit_of(module_of(path))
        if unit == "__main__":
            unit = "cli"
        for module, names, _ in imports(path):
            targets = {unit_of(module)}
            if module == "plato":  # `from plato import x`: x is a top-level module
                targets = {n for n in names if n in LAYER} or {"plato"}
            graph.setdefault(unit, set()).update(t for t in targets if t != unit)
    return graph


def test_every_unit_has_a_layer():
    units = {unit_of(module_of(p)) for p in SRC.rglob("*.py")} - {"plato", "__main__"}
    assert units == set(LAYER), "add new packages to LAYERS (and to the README's map)"


def test_imports_go_down_the_layers_only():
    wrong = []
    for path in SRC.rglob("*.py"):
        unit = unit_of(module_of(path))
        if unit in ("plato", "__main__"):
            continue  # the facade re-exports from below; __main__ is the CLI's entry
        for module, names, line in imports(path):
            target = unit_of(module)
            if module == "plato":
                target = next((n for n in names if n in LAYER), "plato")
            if target in ("plato", unit):
                continue
            if LAYER[target] >= LAYER[unit]:
                wrong.append(f"{path.relative_to(ROOT)}:{line}: {unit} imports {module}")
    assert not wrong, "\n".join(wrong)


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of the graph (its nodes in order, the first again at the end), or None."""
    state: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return path + [node, nxt]
            if nxt not in state and (found := visit(nxt, path + [node])):
                return found
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node, [])):
            return found
    return None


def test_no_cycle_between_packages():
    found = cycle(package_imports())
    assert found is None, "import cycle: " + " -> ".join(found)


def module_imports() -> dict[str, set[str]]:
    """Each module's imports of other modules (a name imported from a package that is one of
    its modules counts as that module; a package's facade, its __init__, is not followed)."""
    paths = {module_of(p): p for p in SRC.rglob("*.py")}
    facades = {module_of(p) for p in SRC.rglob("__init__.py")}
    graph = {}
    for module, path in paths.items():
        targets = set()
        for imported, names, _ in imports(path):
            targets |= {f"{imported}.{n}" for n in names if f"{imported}.{n}" in paths}
            targets.add(imported)
        graph[module] = {t for t in targets if t in paths and t not in facades and t != module}
    return graph


def test_no_cycle_between_modules():
    """Within a package too, modules import one way (a lazy import inside a function counts:
    cuts and hooks once imported each other that way)."""
    found = cycle(module_imports())
    assert found is None, "import cycle: " + " -> ".join(found)


def test_the_cycle_finder_finds_one():
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


@pytest.mark.parametrize("folder", ["src", "tests", "bench"])
def test_no_private_name_crosses_a_package(folder):
    """`from plato.x.y import _name` only inside package x; tests and benchmarks go through
    public names and settings."""
    wrong = []
    for path in (ROOT / folder).rglob("*.py"):
        here = unit_of(module_of(path)) if folder == "src" else None
        for module, names, line in imports(path):
            private = [n for n in names if n.startswith("_") and not n.endswith("__")]
            if private and unit_of(module) != here:
                wrong.append(f"{path.relative_to(ROOT)}:{line}: {module} {private}")
    assert not wrong, "\n".join(wrong)


def test_the_checker_sees_a_wrong_import(tmp_path):
    """The walk finds imports inside functions, where lazy imports hide."""
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from plato.stitch.fit import _private\n")
    assert imports(source) == [("plato.stitch.fit", ["_private"], 2)]
