"""The package's house rules, read from its source: every import runs one way down
the floors of docs/architecture.md, and no private name (``module._name``) is used
outside the module that defines it.  A new room gets a place in FLOORS."""

from __future__ import annotations

import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parents[2] / "subpixel"

# the rooms, from the top floor down (docs/architecture.md draws them); a room may
# import from the floors below it and from itself, never from its own floor or above
FLOORS = [
    ["__main__"],
    ["cli"],
    ["__init__"],  # the package's face: public names only
    ["porting", "auditing", "exporting"],
    ["models", "rewrite"],
    ["layers"],
    ["layer"],
    ["weights", "ops"],
    ["image", "deploy", "backends", "movement"],
    ["_core", "_frameworks"],
]


def _modules() -> dict[str, tuple[pathlib.Path, bool]]:
    """Dotted name -> (file, whether it is a package's __init__)."""
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = ["subpixel", *path.relative_to(PACKAGE).with_suffix("").parts]
        is_package = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return out


def _imports(name: str, path: pathlib.Path, is_package: bool):
    """``(line, imported module, imported name or None)`` of every import in the file
    (in functions and under TYPE_CHECKING too)."""
    base = name.split(".") if is_package else name.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, None
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parent = base[: len(base) - node.level + 1]
                module = ".".join([*parent, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            for alias in node.names:
                yield node.lineno, module, alias.name


def _room(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "subpixel":
        return None
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_room_has_a_floor():
    rooms = {_room(name) for name in _modules()}
    placed = {room for floor in FLOORS for room in floor}
    assert rooms == placed, f"rooms without a floor: {rooms - placed}; gone: {placed - rooms}"


def test_imports_run_one_way_down():
    floor_of = {room: i for i, floor in enumerate(FLOORS) for room in floor}
    modules = _modules()
    wrong = []
    for name, (path, is_package) in modules.items():
        here = _room(name)
        for line, module, imported in _imports(name, path, is_package):
            target = f"{module}.{imported}" if f"{module}.{imported}" in modules else module
            there = _room(target)
            if there is None or there == here:
                continue
            if floor_of[there] <= floor_of[here]:
                wrong.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {here} -> {there}")
    assert wrong == []


def test_no_private_name_is_used_outside_its_module():
    """``from x import _name`` and ``x._name`` across modules of the package (private
    modules themselves, ``_core`` say, are rooms: they may be imported)."""
    modules = _modules()
    found = []
    for name, (path, is_package) in modules.items():
        bound: dict[str, str] = {}  # local name -> subpixel module it is bound to
        for line, module, imported in _imports(name, path, is_package):
            if not module.startswith("subpixel"):
                continue
            if imported is None:
                continue
            full = f"{module}.{imported}"
            if full in modules:
                bound[imported] = full
            elif imported.startswith("_") and not imported.startswith("__") and module != name:
                found.append(f"{path.name}:{line}: from {module} import {imported}")
        tree = ast.parse(path.read_text())
        for alias_node in ast.walk(tree):
            if isinstance(alias_node, ast.ImportFrom):
                for alias in alias_node.names:
                    if alias.asname and alias.name in bound:
                        bound[alias.asname] = bound[alias.name]
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and isinstance(node.value, ast.Name)
                and node.value.id in bound
                and f"{bound[node.value.id]}.{node.attr}" not in modules
            ):
                found.append(f"{path.name}:{node.lineno}: {bound[node.value.id]}.{node.attr}")
    assert found == []
