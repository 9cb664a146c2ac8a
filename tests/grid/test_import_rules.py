"""The rules of grid's rooms (ARCHITECTURE.md, "grid (orchestration): rooms by role"), checked by
walking every import of every module of grid/, function-level imports included:

- a package imports only from its own floor or below, never upwards, and never a peer;
- no module imports a module that imports it back (no circle, lazy imports counted);
- no private name (``_x``) crosses a package; inside a package imports are relative, across
  packages absolute, and no relative import climbs out of its package;
- torch is loaded by no room but ``trial/`` (checked in a subprocess with torch made
  unimportable), and ``spec/`` loads neither pandas nor pyarrow;
- no module of grid/ or er_core/ is over 400 lines.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
GRID = REPO / "grid"

#: The floors of ARCHITECTURE.md: a package may import only packages of a lower floor.
FLOORS = {
    "common": 0, "spec": 1, "store": 2, "stages": 3, "experiment": 4, "trial": 5,
    "run": 6, "report": 6, "cli": 7, "demo": 8, "": 9,  # "": grid/__init__.py, the face
}
TORCH_FREE = [room for room in FLOORS if room not in ("trial", "")]


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(GRID.rglob("*.py"))}


def room(module: str) -> str:
    """The package of ``grid.<room>.<module>`` ("demo" for grid.demo, "" for grid itself)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def is_package(module: str) -> bool:
    return MODULES[module].name == "__init__.py"


def imports(module: str) -> list[tuple[str, list[str], int, bool]]:
    """(imported module, names, relative level, at module level) of every import in ``module``."""
    tree = ast.parse(MODULES[module].read_text())
    found = []

    def visit(node, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inside = top and not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                found.extend((alias.name, [], 0, top) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    package = module if is_package(module) else module.rpartition(".")[0]
                    for _ in range(child.level - 1):
                        package = package.rpartition(".")[0]
                    base = f"{package}.{base}".rstrip(".")
                found.append((base, [a.name for a in child.names], child.level, top))
            visit(child, inside)

    visit(tree, True)
    return found


def grid_edges(module: str) -> set[str]:
    """The grid modules ``module`` imports: the module named, a submodule imported by name from
    a package, and the face (``__init__``) of a package entered from outside it."""
    out = set()
    for target, names, _level, _top in imports(module):
        if target != "grid" and not target.startswith("grid."):
            continue
        hits = [t for t in [target, *(f"{target}.{n}" for n in names)] if t in MODULES]
        for hit in hits:
            out.add(hit)
            parts = hit.split(".")
            for i in range(2, len(parts)):  # the faces of the packages on the way
                face = ".".join(parts[:i])
                if room(face) != room(module):
                    out.add(face)
    out.discard(module)
    # A submodule's own package face is its parent, not an import: never an arrow.
    return {t for t in out if not (is_package(t) and room(t) == room(module) and t != "grid")}


EDGES = {m: grid_edges(m) for m in MODULES}


def test_every_room_is_on_a_floor():
    rooms = {room(m) for m in MODULES}
    assert rooms == set(FLOORS), f"rooms without a floor, or floors without a room: {rooms ^ set(FLOORS)}"


def test_nothing_imports_upwards_or_sideways():
    wrong = []
    for module, targets in EDGES.items():
        for target in targets:
            mine, theirs = room(module), room(target)
            if mine != theirs and FLOORS[theirs] >= FLOORS[mine]:
                wrong.append(f"{module} → {target}")
    assert not wrong, f"imports that go up or sideways between rooms: {sorted(wrong)}"


def test_no_module_imports_a_module_that_imports_it_back():
    # Tarjan's strongly connected components over every import arrow, lazy ones included.
    index, low, stack, on_stack, circles, counter = {}, {}, [], set(), [], [0]

    def connect(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in EDGES[v]:
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for v in EDGES:
        if v not in index:
            connect(v)
    assert not circles, f"import circles: {circles}"


def test_privacy_and_import_style():
    wrong = []
    for module in MODULES:
        mine = room(module)
        for target, names, level, _top in imports(module):
            if not (target == "grid" or target.startswith("grid.")):
                continue
            theirs = room(target)
            if level and theirs != mine:
                wrong.append(f"{module}: relative import climbs out of its room ({'.' * level}{target})")
            if not level and mine not in ("", "demo") and theirs == mine and target != "grid":
                wrong.append(f"{module}: absolute import inside its own room ({target}); use a relative one")
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if private and theirs != mine:
                wrong.append(f"{module}: imports private {private} from another room ({target})")
    assert not wrong, "\n".join(wrong)


def test_every_face_re_exports_what_it_imports():
    """A package's __init__ lists its public names in __all__, and each is importable from it."""
    import importlib

    for module in MODULES:
        if not is_package(module) or module == "grid" or room(module) in ("demo",):
            continue
        face = importlib.import_module(module)
        exported = getattr(face, "__all__", None)
        if module in ("grid.common",):
            continue  # the ground floor's face only documents its modules
        assert exported, f"{module}: its face has no __all__"
        missing = [n for n in exported if not hasattr(face, n)]
        assert not missing, f"{module}.__all__ names what the face lacks: {missing}"


@pytest.mark.parametrize("blocked, rooms", [("torch", TORCH_FREE), ("pandas", ["common", "spec"]),
                                            ("pyarrow", ["common", "spec"])])
def test_rooms_load_without_the_libraries_they_may_not_import(blocked, rooms):
    """Every module of each room imports with ``blocked`` made unimportable (a subprocess)."""
    wanted = sorted(m for m in MODULES if room(m) in rooms and m != "grid")
    code = (f"import importlib, sys\nsys.modules[{blocked!r}] = None\n"
            f"for name in {wanted!r}:\n    importlib.import_module(name)\nprint('ok')")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_the_rule_checkers_catch_what_they_are_for(tmp_path):
    """The walker sees function-level imports, relative ones and submodules imported by name:
    the arrows the rules above are judged on (a walker that missed them would pass anything)."""
    assert "grid.trial.trainable" in EDGES["grid.run.repair"]  # a function-level import
    assert "grid.store.layout" in EDGES["grid.stages.codes"]    # absolute, across rooms
    assert "grid.store" in EDGES["grid.stages.codes"]           # the face entered from outside
    assert "grid.stages.evaluation" in EDGES["grid.stages"]     # `from . import evaluation`
    assert "grid.store.results_store" in EDGES["grid.store.locate"]  # relative


def test_no_module_over_400_lines():
    long = {str(p.relative_to(REPO)): n for pkg in ("grid", "er_core") for p in (REPO / pkg).rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 400}
    assert not long, f"modules over 400 lines: {long}"
