"""The repository's promises to a newcomer: two README commands, CI runs the second one,
requirements.txt and pyproject.toml agree, and the architecture doc names every module."""

import re
import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def readme_commands() -> list[str]:
    quick = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```(?:bash|sh)\n(.+?)\n```", quick, flags=re.S)


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


def test_architecture_doc_names_every_module():
    doc = (ROOT / "docs/ARCHITECTURE.md").read_text(encoding="utf-8")
    for module in sorted((ROOT / "minigpt").glob("*.py")):
        if module.stem != "__init__":
            assert f"`{module.stem}.py`" in doc, f"docs/ARCHITECTURE.md does not mention minigpt/{module.name}"
    for package in sorted(p.parent for p in (ROOT / "minigpt").glob("*/__init__.py")):
        assert f"`{package.name}/`" in doc, f"docs/ARCHITECTURE.md does not mention minigpt/{package.name}/"


def test_imports_go_one_way():
    """A module imports only modules of its own layer or lower ones, as docs/ARCHITECTURE.md says."""
    doc = (ROOT / "docs/ARCHITECTURE.md").read_text(encoding="utf-8")
    layers = {m: int(n) for n, m in re.findall(r"^\| (\d) \w+ \| `(\w+)(?:\.py|/)`", doc, flags=re.M)}
    assert "runtime" in layers and "train" in layers
    for module in sorted((ROOT / "minigpt").glob("*.py")) + sorted((ROOT / "minigpt").glob("*/*.py")):
        if module.stem == "__init__" and module.parent.name == "minigpt":
            continue
        name = module.stem if module.parent.name == "minigpt" else module.parent.name
        text = module.read_text(encoding="utf-8")
        used = set(re.findall(r"^\s*from minigpt\.(\w+) import", text, flags=re.M))
        used |= set(re.findall(r"^\s*import minigpt\.(\w+)", text, flags=re.M))
        for names in re.findall(r"^\s*from minigpt import ([\w, ]+)", text, flags=re.M):
            used |= {n.split(" as ")[0].strip() for n in names.split(",")}
        for dep in used - {name}:
            assert layers[dep] <= layers[name], f"{module.relative_to(ROOT)} (layer {layers[name]}) imports {dep} (layer {layers[dep]})"
