"""The repository's promises to a newcomer: two README commands, CI runs the second one,
requirements.txt and pyproject.toml agree, and the architecture doc names every module."""

import ast
import re

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def readme_commands() -> list[str]:
    quick = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```(?:bash|sh)\n(.+?)\n```", quick, flags=re.DOTALL)


def test_quick_start_is_two_one_line_commands():
    cmds = readme_commands()
    assert len(cmds) == 2, cmds
    assert all("\n" not in c for c in cmds)
    assert "jupyter lab notebooks/00_welcome.ipynb" in cmds[0]
    assert cmds[1].rstrip().endswith("pytest")


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci/run").read_text(encoding="utf-8")
    assert readme_commands()[1] in ci.splitlines()


def _names(reqs: list[str]) -> set[str]:
    return {re.split(r"[<>=!~\[ ]", r.strip(), maxsplit=1)[0].lower() for r in reqs if r.strip()}


def test_requirements_and_pyproject_list_the_same_packages():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = [ln for ln in (ROOT / "requirements.txt").read_text().splitlines() if ln and not ln.startswith(("#", "-"))]
    assert _names(lines) == _names(project["dependencies"])



PACKAGE = ROOT / "minigpt"
TOP_MODULES = {"minigpt", "minigpt.cli", "minigpt.__main__"}  # above every layer


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _layers() -> tuple[str, ...]:
    tree = ast.parse((PACKAGE / "__init__.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and [t.id for t in node.targets] == ["LAYERS"]:
            return tuple(ast.literal_eval(node.value))
    raise AssertionError("minigpt/__init__.py defines no LAYERS")


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Which minigpt modules each module imports, read from its code (imports inside functions
    included). ``from minigpt.x import y`` counts y when y is a module, else minigpt.x."""
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name.split(".")[0] == "minigpt"}
            elif (isinstance(node, ast.ImportFrom) and node.level == 0 and node.module
                  and node.module.split(".")[0] == "minigpt"):
                for a in node.names:
                    sub = f"{node.module}.{a.name}"
                    deps.add(sub if sub in modules else node.module)
        graph[name] = {d for d in deps if d != name}
    return graph


def layer_of(module: str, layers: tuple[str, ...]) -> int:
    """The index of the module's layer; the top-level modules sit above every layer."""
    if module in TOP_MODULES:
        return len(layers)
    return layers.index(module.split(".")[1])


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of ``graph`` (a list that starts and ends with the same module), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return path[path.index(dep):] + [dep]
            if dep not in state and (cycle := visit(dep, [*path, dep])):
                return cycle
        state[node] = 2
        return None

    for name in sorted(graph):
        if name not in state and (cycle := visit(name, [name])):
            return cycle
    return None


def test_find_cycle_finds_a_circle_within_a_layer_and_none_in_a_chain():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_every_module_lives_in_a_layer_folder():
    layers = _layers()
    folders = sorted(p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__")
    assert folders == sorted(layers), f"minigpt/ has folders {folders}, LAYERS says {layers}"
    for name in _modules():
        assert name in TOP_MODULES or name.split(".")[1] in layers, f"{name} lives outside the layers"


def test_imports_go_down_the_layers_and_never_in_a_circle():
    """The import graph, built from the code: no module imports from a higher layer (the
    folders, in the order of minigpt.LAYERS), and no modules import each other in a circle,
    within a layer or across."""
    layers, modules = _layers(), _modules()
    graph = import_graph(modules)
    assert "minigpt.core.runtime" in graph["minigpt.models.gpt"], "the parser reads no imports"
    for name, deps in graph.items():
        for dep in deps - {"minigpt"}:
            assert dep in modules, f"{name} imports {dep}, which does not exist"
            assert layer_of(dep, layers) <= layer_of(name, layers), (
                f"{name} imports {dep}, from a higher layer: move the shared piece down, or pass "
                "it in as a value")
    # `import minigpt` (for minigpt.by_profile) reaches core.runtime through the package
    graph = {n: {"minigpt.core.runtime" if d == "minigpt" else d for d in deps}
             for n, deps in graph.items()}
    assert find_cycle(graph) is None, "an import circle: " + " -> ".join(find_cycle(graph))


def test_layer_packages_hold_only_a_docstring():
    """No re-exports: a name is imported from the module that defines it. The two front doors:
    the top level's runtime names, and the exercise checks (one namespace for the notebooks)."""
    for name, path in _modules().items():
        if path.name == "__init__.py" and name not in {"minigpt", "minigpt.course.checks"}:
            tree = ast.parse(path.read_text(encoding="utf-8"))
            assert all(isinstance(n, ast.Expr) for n in tree.body), f"{name} holds code: keep it to a docstring"


def test_no_module_is_longer_than_a_sitting():
    for path in _modules().values():
        lines = len(path.read_text(encoding="utf-8").splitlines())
        assert lines <= 460, f"{path.relative_to(ROOT)} has {lines} lines: split it by idea"


def test_architecture_doc_names_every_module_and_the_layers_in_order():
    doc = (ROOT / "docs/ARCHITECTURE.md").read_text(encoding="utf-8")
    for name, path in _modules().items():
        if name.startswith("minigpt.course.checks.") or (path.name == "__init__.py" and name != "minigpt.course.checks"):
            continue
        rel = path.relative_to(PACKAGE).as_posix().removesuffix("/__init__.py")
        shown = "checks/" if name == "minigpt.course.checks" else f"{path.name}"
        assert f"`{shown}`" in doc, f"docs/ARCHITECTURE.md does not mention minigpt/{rel}"
    order = [doc.find(f"### `{layer}/`") for layer in _layers()]
    assert -1 not in order and order == sorted(order), (
        "docs/ARCHITECTURE.md must give each layer a '### `name/`' section, in LAYERS order")
