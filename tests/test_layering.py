"""The project's layering, read from every import (those inside functions too):
- common/ imports no assignment;
- no assignment imports another assignment's script (a module with `if __name__ == "__main__":`);
- an assignment imports another only through the "same as part A" edges in ALLOWED;
- the project's modules import each other without a circle."""
import ast
from pathlib import Path

import pytest

from tests.conftest import REPO

ASSIGNMENTS = ("mnist_scratch", "fashion_mnist_ffn", "cifar100_multitask", "sketch_rnn", "dfad_kd", "kd_cifar10",
               "resnet_norms", "text2math", "slot_attention", "slot_diffusion")
PACKAGES = ASSIGNMENTS + ("common",)
# importer folder -> the other folders' modules it may import (the course's "same as part A" reuse)
ALLOWED = {
    "fashion_mnist_ffn": {f"mnist_scratch.engine.{m}" for m in ("init", "layers", "losses", "network", "optim",
                                                               "training")} | {"mnist_scratch.engine"},  # assignment 1
    "dfad_kd": {"resnet_norms.model", "kd_cifar10.model"},       # its teachers and students are those ResNets
    "kd_cifar10": {"resnet_norms.model"},                        # the CIFAR ResNet the published weights load into
    "slot_diffusion": {"slot_attention.model", "slot_attention.data", "slot_attention.library"},   # part A
}


def project_modules() -> dict[str, Path]:
    """'slot_attention.model' -> its file, for every module of the packages."""
    modules = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            modules[name] = path
    return modules


def imports_of(path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules `path` imports anywhere in the file (`from a.b import c` counts a.b.c when that is
    a module, else a.b)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in modules else node.module
                     for alias in node.names]
        else:
            continue
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name:
                found.add(name)
    return found


def is_script(path: Path) -> bool:
    tree = ast.parse(path.read_text())
    return any(isinstance(node, ast.If) and "__main__" in ast.unparse(node.test) for node in tree.body)


MODULES = project_modules()
GRAPH = {name: imports_of(path, MODULES) - {name} for name, path in MODULES.items()}


def folder(module: str) -> str:
    return module.split(".")[0]


def test_the_graph_sees_the_project():
    assert "common.training" in MODULES and "slot_attention.model" in MODULES
    assert "common.training" in GRAPH["resnet_norms.train"]


def test_common_imports_no_assignment():
    bad = sorted(f"{m} -> {d}" for m, deps in GRAPH.items() if folder(m) == "common"
                 for d in deps if folder(d) != "common")
    assert not bad, bad


def test_no_assignment_imports_another_assignments_script():
    bad = sorted(f"{m} -> {d}" for m, deps in GRAPH.items() for d in deps
                 if folder(d) != folder(m) and folder(d) != "common" and is_script(MODULES[d]))
    assert not bad, bad


def test_cross_assignment_imports_are_the_allowed_reuse():
    bad = sorted(f"{m} -> {d}" for m, deps in GRAPH.items() for d in deps
                 if folder(m) in ASSIGNMENTS and folder(d) in ASSIGNMENTS and folder(d) != folder(m)
                 and d not in ALLOWED.get(folder(m), set()))
    assert not bad, bad


def test_no_import_circle():
    """Depth-first search for a back edge; the message names one circle."""
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> list[str] | None:
        state[node] = 1
        for dep in sorted(GRAPH.get(node, ())):
            if state.get(dep) == 1:
                return trail[trail.index(dep):] + [node, dep] if dep in trail else [node, dep]
            if dep not in state:
                found = visit(dep, trail + [node])
                if found:
                    return found
        state[node] = 2
        return None

    for start in sorted(GRAPH):
        if start not in state:
            circle = visit(start, [])
            assert circle is None, " -> ".join(circle)


@pytest.mark.parametrize("source, expected", [
    ("import common.training\n", {"common.training"}),
    ("def f():\n    from slot_attention.model import SlotConfig\n", {"slot_attention.model"}),
    ("from common import training\n", {"common.training"}),
    ("import numpy\n", set()),
])
def test_imports_are_read_inside_functions_too(tmp_path, source, expected):
    path = tmp_path / "probe.py"
    path.write_text(source)
    assert imports_of(path, MODULES) == expected
