"""The walls of the architecture, checked rather than kept by discipline: models never import the
harness, and the results code (records, statistics, reports, gates) runs without torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# everything that reads records and judges them: a reader of results must not need torch installed
RESULTS = ("bench.results", *(f"bench.results.{p.stem}" for p in sorted((REPO / "bench" / "results").glob("*.py"))
                              if p.stem != "__init__"), "bench.perf.cost",
           "bench.perf.scaling", "bench.perf.scale_point", "bench.data.beautylike")


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at any depth (function-level imports included)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)  # `from bench import stats`
    return names


@pytest.mark.parametrize("path", sorted((REPO / "models").rglob("*.py")), ids=lambda p: p.relative_to(REPO).as_posix())
def test_models_never_import_the_harness(path: Path) -> None:
    bad = sorted(m for m in imported_modules(path) if m == "bench" or m.startswith("bench."))
    assert not bad, f"{path.name} imports {', '.join(bad)}: models must not depend on bench"


def _fence_exports() -> set[str]:
    """The names `models/fast/__init__.py` lists in `__all__`, read without importing it (or torch)."""
    tree = ast.parse((REPO / "models" / "fast" / "__init__.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            return set(ast.literal_eval(node.value))
    return set()


@pytest.mark.parametrize("path", sorted((REPO / "models").glob("*.py")), ids=lambda p: p.name)
def test_model_code_reaches_the_fast_path_only_through_its_fence(path: Path) -> None:
    """models/fast/ holds the speed machinery; the model files import its public names only."""
    exports, bad = _fence_exports(), []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            bad += [a.name for a in node.names if a.name.startswith("models.fast.")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("models.fast."):
            bad.append(node.module)
        elif isinstance(node, ast.ImportFrom) and node.module == "models.fast":
            bad += [f"models.fast.{a.name}" for a in node.names if a.name not in exports]
    assert exports and not bad, f"{path.name} imports {', '.join(bad)}: use the names models.fast exports"


@pytest.mark.parametrize("module", RESULTS)
def test_results_code_imports_no_torch(module: str) -> None:
    code = f"import sys, {module}; bad = [m for m in ('torch', 'models') if m in sys.modules]; " \
           "print(','.join(bad)); sys.exit(1 if bad else 0)"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert res.returncode == 0, f"importing {module} loads {res.stdout.strip() or res.stderr}"


def _bench_imports() -> dict[str, set[str]]:
    """bench module -> the bench modules it imports (function-level imports included)."""
    graph: dict[str, set[str]] = {}
    for path in sorted((REPO / "bench").rglob("*.py")):
        rel = path.relative_to(REPO).with_suffix("")
        name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        graph[name] = {m for m in imported_modules(path) if m.startswith("bench.") or m == "bench"}
    return graph


def test_no_bench_module_imports_the_cli() -> None:
    """The CLI is a dispatch table over the domain; the domain never depends on it."""
    users = sorted(m for m, deps in _bench_imports().items() if "bench.cli" in deps and m != "bench.__main__")
    assert not users, f"{', '.join(users)} import bench.cli"


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle among the graph's modules, or None (depth-first search, three colours)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for d in sorted(graph.get(m, ())):
            dep = d if d in graph else d.rsplit(".", 1)[0]  # "from bench.x import name" may name a module
            if dep not in graph or dep == m:
                continue
            if state.get(dep) == 1:
                return [*stack[stack.index(dep):], dep]
            if dep not in state and (found := visit(dep)):
                return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_bench_has_no_import_cycle() -> None:
    """Function-level imports count: an import hidden in a function still ties two modules together."""
    cycle = _cycle(_bench_imports())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])
