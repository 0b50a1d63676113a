"""The packages' import graphs, read from the source (every import, also those inside functions):
no circle in any package, and the layering the README's code map shows holds in the server."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {
    "mnist_server": REPO_ROOT / "server" / "mnist_server",
    "mnist_client": REPO_ROOT / "client" / "mnist_client",
    "mnist_trainer": REPO_ROOT / "trainer" / "mnist_trainer",
}


def module_name(package: str, root: Path, path: Path) -> str:
    parts = [package, *path.relative_to(root).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(package: str, root: Path) -> dict[str, set[str]]:
    """{module: modules of the same package it imports}. `from . import x` counts as importing x."""
    modules = {module_name(package, root, p): p for p in root.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        base = name.split(".") if is_package else name.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    anchor = base[: len(base) - node.level + 1]
                    prefix = ".".join(anchor + ([node.module] if node.module else []))
                else:
                    prefix = node.module or ""
                targets = [prefix] + [f"{prefix}.{alias.name}" for alias in node.names]
            for target in targets:
                if target in modules and target != name:
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in graph[node]:
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_no_import_circles(package):
    graph = imports_of(package, PACKAGES[package])
    # a package's __init__ re-exporting its modules is not a circle of design: a module's edge to a
    # package it is inside of (`from mnist_client.bench import worker` runs bench/__init__ first) is dropped
    for module, edges in graph.items():
        edges -= {target for target in list(edges) if module.startswith(target + ".")}
    assert cycles(graph) == [], "import circles"


def test_the_server_imports_only_downwards():
    """adapters -> inference core -> repository -> batcher/runtimes; nothing below imports what is above
    it, and the adapters reach the models only through the core."""
    graph = imports_of("mnist_server", PACKAGES["mnist_server"])
    adapters = {m for m in graph if m.startswith(("mnist_server.services", "mnist_server.web"))}
    below_core = {
        "mnist_server.repository",
        "mnist_server.batcher",
        "mnist_server.runtimes",
        "mnist_server.runtime_litert",
        "mnist_server.runtime_tensorflow",
        "mnist_server.model",
        "mnist_server.statistics",
        "mnist_server.errors",
        "mnist_server.device_slots",
    }
    for module in below_core & set(graph):
        upward = graph[module] & (
            adapters
            | {
                "mnist_server.inference",
                "mnist_server.app",
                "mnist_server.metrics",
                "mnist_server.metered",
                "mnist_server.security",
            }
        )
        assert not upward, f"{module} imports up: {sorted(upward)}"
    core_up = graph["mnist_server.inference"] & (adapters | {"mnist_server.app", "mnist_server.metrics"})
    assert not core_up, f"the inference core imports up: {sorted(core_up)}"
    for module in adapters:
        around = graph[module] & {"mnist_server.repository", "mnist_server.batcher", "mnist_server.runtimes"}
        assert not around, f"{module} reaches around the inference core: {sorted(around)}"


def test_the_server_and_the_trainer_do_not_depend_on_the_client():
    """They share the contract package (proto/, mnist-serving-api) instead: upgrading mnist-client cannot
    change how the server behaves."""
    import subprocess
    import sys
    import tomllib

    for part in ("server", "trainer"):
        project = tomllib.loads((REPO_ROOT / part / "pyproject.toml").read_text())["project"]
        names = [dep.split(">")[0].split("=")[0].split("[")[0].strip() for dep in project["dependencies"]]
        assert "mnist-client" not in names and "mnist-serving-api" in names, (part, names)
    for package in ("mnist_server", "mnist_trainer"):
        for path in PACKAGES[package].rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                modules = (
                    [a.name for a in node.names]
                    if isinstance(node, ast.Import)
                    else [node.module or ""]
                    if isinstance(node, ast.ImportFrom)
                    else []
                )
                assert not any(m.split(".")[0] == "mnist_client" for m in modules), path
    # and it runs with the client package absent (imports of it fail)
    blocker = (
        "import sys\nclass Block:\n    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'mnist_client':\n            raise ImportError('no mnist_client')\n"
        "sys.meta_path.insert(0, Block())\n"
        "import mnist_server.app, mnist_server.web.server, mnist_server.__main__\nprint('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", blocker], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "ok", result.stderr[-2000:]
