"""The library's layering, read from its own ``import`` statements: imports go from higher layers to lower
ones (or within a layer), and no modules import each other in a circle. Typing-only imports count too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# From the bottom up. A module belongs to the layer of the longest prefix that names it.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("her",),  # the replay core: storage, relabeling, goals and rewards, validation, checkpoint files, buffer API
    ("envs", "agents"),  # environment creation; learning
    ("training",),  # the run machinery: runner, build, resume, checkpoints, metrics, distributed, report, benchmark
    ("scripts", "hydra_plugins"),  # entry points (scripts never import each other); the Hydra sweeper plugin
)
PACKAGES = ("her", "agents", "envs", "training", "scripts", "hydra_plugins")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> int:
    best, best_len = -1, -1
    for level, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = level, len(prefix)
    return best


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The project modules that ``path`` imports (``from a import b`` counts ``a.b`` when that is a module,
    else ``a``)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # ``from pkg import submodule`` imports the submodule; ``from pkg import name``, the package
            names = [
                f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in modules else node.module
                for alias in node.names
            ]
        else:
            continue
        for name in names:
            if name in modules:
                found.add(name)
            elif f"scripts.{name}" in modules:  # a script imported by its bare name (scripts/ on sys.path)
                found.add(f"scripts.{name}")
    return found


def import_graph() -> dict[str, set[str]]:
    paths = [p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")]
    modules = {module_name(p) for p in paths}
    return {module_name(p): imports_of(p, modules) - {module_name(p)} for p in paths}


def test_every_module_has_a_layer():
    graph = import_graph()
    assert "training.runner" in graph and "her.relabel" in graph and "agents.policy" in graph
    assert [m for m in graph if layer_of(m) < 0] == []


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return [
        f"{module} (layer {layer_of(module)}) imports {target} (layer {layer_of(target)})"
        for module, targets in graph.items()
        for target in sorted(targets)
        if layer_of(target) > layer_of(module)
    ]


def test_the_layer_check_finds_a_planted_upward_import(tmp_path):
    graph = import_graph()
    graph["her.buffer"] = graph["her.buffer"] | {"training.metrics"}
    assert upward_imports(graph) == ["her.buffer (layer 0) imports training.metrics (layer 2)"]
    planted = tmp_path / "planted.py"
    planted.write_text("from training.cli import train\nimport evaluate\n")
    modules = set(graph) | {"scripts.evaluate"}
    assert imports_of(planted, modules) == {"training.cli", "scripts.evaluate"}


def test_scripts_import_no_other_script():
    graph = import_graph()
    crossing = [
        f"{m} imports {t}"
        for m, targets in graph.items()
        if m.startswith("scripts.")
        for t in targets
        if t.startswith("scripts.")
    ]
    assert crossing == []


def test_no_import_reaches_a_higher_layer():
    assert upward_imports(import_graph()) == []


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = 2
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_circle():
    assert find_cycle(import_graph()) is None


@pytest.mark.parametrize(
    ("graph", "expected"),
    [({"a": {"b"}, "b": {"c"}, "c": {"a"}}, ["a", "b", "c", "a"]), ({"a": {"b"}, "b": set()}, None)],
)
def test_the_circle_finder_finds_circles(graph, expected):
    assert find_cycle(graph) == expected


def test_public_names_import_from_the_package_roots():
    from agents.policy import load_policy
    from her import HerReplayBuffer, HindsightExperienceReplay, sample_her_transitions

    assert all(callable(x) for x in (load_policy, HerReplayBuffer, HindsightExperienceReplay, sample_her_transitions))


TESTS = ROOT / "tests"


def imported_test_modules(path: Path) -> set[str]:
    """The test modules (``tests/test_*.py``, by their bare names) that ``path`` imports."""
    test_modules = {p.stem for p in TESTS.glob("test_*.py")}
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = (node.module or "").removeprefix("tests.").removeprefix("tests")
            names = [base] + [f"{base}.{alias.name}".lstrip(".") for alias in node.names]
        else:
            continue
        found |= {name.removeprefix("tests.") for name in names} & test_modules
    return found


def test_no_test_module_imports_another():
    """Shared test code lives in tests/conftest.py and tests/helpers/, so each test module stands alone."""
    importing = {
        str(path.relative_to(ROOT)): sorted(modules)
        for path in sorted(TESTS.rglob("*.py"))
        if (modules := imported_test_modules(path))
    }
    assert importing == {}


def test_the_test_import_check_finds_planted_imports(tmp_path):
    planted = tmp_path / "planted.py"
    planted.write_text("from test_ddpg import batch\nimport test_cli\nfrom tests import test_agents\nimport helpers\n")
    assert imported_test_modules(planted) == {"test_ddpg", "test_cli", "test_agents"}
