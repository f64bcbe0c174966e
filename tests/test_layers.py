"""The import graph: layers only point down, and no module imports itself through others.

Every ``import`` of an ``xnorlearn`` module is read from the source (module level and
inside functions alike) and checked against the layers, bottom to top:

0. the golden model (``xnorlearn.sw.golden``);
1. the hardware/software contracts (``xnorlearn.contract``, ``xnorlearn.serial_link``);
2. the gateware (``xnorlearn.hw``) beside the host software (the rest of ``xnorlearn.sw``):
   neither imports the other;
3. simulation and boards (``xnorlearn.sim``, ``xnorlearn.boards``);
4. the command line and device opening (``xnorlearn.sw.cli``, ``xnorlearn.sw.verify``,
   ``xnorlearn.sw.devices``).
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"xnorlearn": "xnorlearn", "xnorlearn.sw": "sw", "xnorlearn.hw": "hw",
            "xnorlearn.sim": "sim", "xnorlearn.boards": "boards"}
TOP = {"xnorlearn.sw.cli", "xnorlearn.sw.verify", "xnorlearn.sw.devices"}


def layer(module):
    """``(rank, side)`` of a module; modules of one rank but another side may not meet."""
    if module.startswith("xnorlearn.sw.golden"):
        return 0, "golden"
    if module in ("xnorlearn", "xnorlearn.contract", "xnorlearn.serial_link"):
        return 1, "contract"
    if module in TOP:
        return 4, "cli"
    if module.startswith("xnorlearn.hw"):
        return 2, "gateware"
    if module.startswith("xnorlearn.sw"):
        return 2, "host"
    if module.startswith(("xnorlearn.sim", "xnorlearn.boards")):
        return 3, "sim"
    raise AssertionError(f"{module} belongs to no layer")


def modules():
    """``{module name: path}`` of every source module of the package."""
    found = {}
    for package, folder in PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            name = ".".join([package, *parts])
            found[name] = path
    return found


def imports(name, path):
    """The ``xnorlearn`` modules that module ``name`` imports."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            found.add(target)
            found.update(f"{target}.{a.name}" for a in node.names)
    return {m for m in found if m and m.split(".")[0] == "xnorlearn"}


@pytest.fixture(scope="module")
def graph():
    mods = modules()
    return {name: {m for m in imports(name, path) if m in mods and m != name}
            for name, path in mods.items()}


def test_every_module_has_a_layer(graph):
    for name in graph:
        layer(name)


def test_layers_point_down(graph):
    bad = []
    for name, targets in graph.items():
        rank, side = layer(name)
        for target in targets:
            t_rank, t_side = layer(target)
            if t_rank > rank or (t_rank == rank and t_side != side):
                bad.append(f"{name} ({side}) imports {target} ({t_side})")
    assert not bad, "imports that point up or across:\n" + "\n".join(sorted(bad))


def test_acyclic(graph):
    # Package __init__ modules are left out: importing a submodule imports its package.
    edges = {n: {t for t in ts if t not in PACKAGES} for n, ts in graph.items()
             if n not in PACKAGES}
    state = {}

    def visit(node, path):
        state[node] = "open"
        for target in sorted(edges.get(node, ())):
            if state.get(target) == "open":
                cycle = path[path.index(target):] + [target]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target, path + [target])
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])


@pytest.mark.parametrize("name", ["contract.py", "serial_link.py"])
def test_contract_has_no_dependencies(name):
    path = ROOT / "xnorlearn" / name
    tree = ast.parse(path.read_text())
    names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import)
             for a in n.names}
    names |= {n.module.split(".")[0] for n in ast.walk(tree)
              if isinstance(n, ast.ImportFrom) and n.module}
    assert names <= {"dataclasses", "enum"}, names


def test_the_check_finds_a_violation(tmp_path):
    """The checker itself: an upward import is reported."""
    fake = tmp_path / "golden_up.py"
    fake.write_text("from xnorlearn.sw.driver import Device\n")
    found = imports("xnorlearn.sw.golden.golden_up", fake)
    assert "xnorlearn.sw.driver" in found
    rank, _ = layer("xnorlearn.sw.golden.golden_up")
    assert layer("xnorlearn.sw.driver")[0] > rank
